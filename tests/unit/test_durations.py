"""Stage durations hold bounded memory over a long run: exact count, mean and max, percentiles from a sample."""
import numpy as np

from firmware_host.pipeline.stages import Durations, summarize


def test_short_series_are_exact():
    values = [0.001 * i for i in range(1, 101)]
    series = Durations(kept=1000)
    for v in values:
        series.append(v)
    assert summarize(series) == summarize(values)


def test_long_series_keep_a_bounded_uniform_sample():
    values = np.random.default_rng(3).exponential(0.01, 50_000)
    series = Durations(kept=5_000)
    for v in values:
        series.append(float(v))
    assert len(series.sample()) == 5_000 and len(series) == 50_000
    got, exact = summarize(series), summarize(list(values))
    assert got["count"] == exact["count"] and got["max_ms"] == exact["max_ms"]
    assert abs(got["mean_ms"] - exact["mean_ms"]) < 1e-6
    for key in ("p50_ms", "p90_ms"):
        assert abs(got[key] - exact[key]) / exact[key] < 0.05, (key, got[key], exact[key])
    late = series.sample()[series.sample() > 0]  # the sample keeps late values too, not only the first 5,000
    assert set(np.round(late, 12)) & set(np.round(values[25_000:], 12))
