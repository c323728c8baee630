"""Every report plot, drawn from crowded but realistic figures, saves without two labels overlapping: the text
boxes of each figure are checked when it is saved (``page.save_figure`` warns about each overlap)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install 'edge-age[report]')")

from edge_age.report import bench_plots, eval_plots, train_plots  # noqa: E402
from edge_age.report.convert_page import age_plot, snr_plot  # noqa: E402
from edge_age.report.page import overlapping_labels, pyplot, save_figure  # noqa: E402

RNG = np.random.default_rng(7)
# A family bench as a user makes it: three members, three files each, 1 and 2 threads; files of one member sit
# almost on one point (int8-qat and edgetpu run the same int8 graph on the CPU).
FAMILY = {"m": (2.43, 5.21), "s": (1.12, 5.85), "n": (0.71, 6.62)}
FILES = {"float32": (1.9, -0.02), "int8-qat": (1.0, 0.0), "edgetpu": (1.01, 0.004)}


def family_points() -> list[dict]:
    points = []
    for member, (ms, mae) in FAMILY.items():
        for file, (slower, worse) in FILES.items():
            for threads, faster in ((1, 1.0), (2, 0.58)):
                points.append({"label": f"{member} {file} ×{threads}", "latency": ms * slower * faster,
                               "mae": mae + worse, "front": file == "int8-qat"})
    return points


@pytest.fixture()
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="edge_age.report.page")
    return caplog


def no_overlap(warnings) -> None:
    clashes = [r.getMessage() for r in warnings.records if "labels overlap" in r.getMessage()]
    assert not clashes, "\n".join(clashes)


def test_the_check_sees_overlapping_labels(tmp_path, warnings):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    assert ("first label", "second label") in overlapping_labels(fig)
    save_figure(fig, tmp_path / "clash.png")
    assert "'first label' / 'second label'" in warnings.text
    fig, ax = plt.subplots()
    ax.text(0.1, 0.1, "apart")
    ax.text(0.7, 0.8, "far apart")
    ax.legend(handles=ax.plot([0, 1], [0, 1], label="a line"), loc="upper left")
    assert overlapping_labels(fig) == []


def test_bench_plots(tmp_path, warnings):
    points = family_points()
    bench_plots.tradeoff({"host": points}, tmp_path / "tradeoff.png", "Accuracy against latency on host")
    bench_plots.tradeoff({"host": points, "pi5": [{**p, "latency": p["latency"] * 4.1} for p in points]},
                         tmp_path / "merged.png", "Accuracy against latency")
    samples = {p["label"]: list(RNG.lognormal(np.log(p["latency"]), 0.1, 200)) for p in points}
    bench_plots.latency_spread(samples, tmp_path / "latency.png")
    curves = {p["label"]: {"age_from": list(range(0, 80, 5)), "width": 5, "mae": list(RNG.uniform(3, 12, 16))}
              for p in points}
    bench_plots.error_by_age_lines(curves, tmp_path / "error_by_age.png")
    windows = {p["label"]: [{"t_s": 10.0 * i, "p50": p["latency"] * (1 + 0.01 * i)} for i in range(30)]
               for p in points[:6]}
    bench_plots.over_time(windows, [(10.0 * i, 55 + i / 3) for i in range(30)], tmp_path / "over_time.png")
    no_overlap(warnings)
    assert all((tmp_path / f).stat().st_size > 10_000 for f in ("tradeoff.png", "latency.png", "over_time.png"))


def layers(n: int, worst_at: list[int]) -> list[dict]:
    snr = RNG.uniform(25, 45, n)
    snr[worst_at] = [3.0, 3.5, 4.0][:len(worst_at)]
    order = np.argsort(snr)
    rank = {int(i): r + 1 for r, i in enumerate(order)}
    return [{"index": i, "name": f"model/block_{i // 3}_{'expand depthwise project'.split()[i % 3]}/Relu6",
             "snr_db": float(snr[i]), "channel_snr_db": float(snr[i] - RNG.uniform(0, 8)), "rank": rank[i]}
            for i in range(n)]


def converted(target: str, worst_at: list[int], **extra) -> dict:
    ages = RNG.uniform(1, 90, 100)
    return {"target": target, "details": {"layers": layers(66, worst_at), "layer_method": "interpreter",
                                          "output": {"age_float": list(ages), "age_quantized": list(
                                              ages + RNG.normal(0, 2, 100)), "mean_quantization_error": 1.6},
                                          **extra}}


def test_convert_plots(tmp_path, warnings):
    rows = [converted("int8", [30, 31, 33]), converted("int8-qat", [64, 65, 63]),
            converted("edgetpu", [0, 1, 2]),
            converted("int8-mixed", [40, 41, 44], kept_float=["a", "b"])]
    rows[-1]["details"]["layers"] = [l for l in rows[-1]["details"]["layers"] if l["index"] not in (50, 51)]
    snr_plot(rows, tmp_path / "convert_snr.png")
    age_plot(rows, tmp_path / "convert_age_diff.png")
    no_overlap(warnings)


def test_evaluation_and_training_plots(tmp_path, warnings):
    groups = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    confusion = RNG.integers(0, 400, (9, 9)).tolist()
    eval_plots.confusion_heatmap(confusion, groups, tmp_path / "confusion.png")
    female = RNG.uniform(0, 1, 500)
    eval_plots.gender_roc(female, female + RNG.normal(0, 0.3, 500) > 0.5, 0.93, tmp_path / "roc.png")
    breakdown = {"gender": {"male": {"mae": 5.1, "n": 1043}, "female": {"mae": 5.6, "n": 1016}},
                 "race": {r: {"mae": 5 + i / 3, "n": 100 * (i + 1)} for i, r in
                          enumerate(["White", "Black", "Asian", "Indian", "Others"])}}
    eval_plots.error_by_group(breakdown, tmp_path / "groups.png")
    true = RNG.uniform(1, 100, 2000)
    train_plots.predicted_vs_true(true + RNG.normal(0, 6, 2000), true, tmp_path / "pred.png")
    train_plots.error_by_age_bars(true + RNG.normal(0, 6, 2000), true, tmp_path / "bars.png")
    no_overlap(warnings)
