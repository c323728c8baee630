"""Per-stage timing of the pipeline: record seconds per stage, summarise as milliseconds percentiles."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

STAGES = ("capture", "detect", "carry", "preprocess", "infer", "postprocess", "draw")


KEPT = 100_000  # durations kept per series for its percentiles: a uniform sample of the whole run


class Durations:
    """A series of durations of bounded memory: count, mean and max exact over every one; percentiles from a
    uniform sample of at most ``kept`` of them (reservoir sampling), so that a run of days holds a few MB."""

    def __init__(self, kept: int = KEPT, seed: int = 0):
        self._sample = np.full(kept, np.nan)  # written now: its memory is taken at start, not over hours
        self._rng = np.random.default_rng(seed)
        self.count, self.total, self.max = 0, 0.0, 0.0

    def append(self, seconds: float) -> None:
        slot = self.count if self.count < len(self._sample) else int(self._rng.integers(0, self.count + 1))
        if slot < len(self._sample):
            self._sample[slot] = seconds
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def sample(self) -> np.ndarray:
        return self._sample[:min(self.count, len(self._sample))]

    def __len__(self) -> int:
        return self.count


def summarize(seconds: list[float] | Durations) -> dict:
    """Count, mean, p50, p90, p99 and max of durations, in milliseconds (percentiles of a long
    :class:`Durations` come from its sample)."""
    if not len(seconds):
        return {"count": 0}
    if isinstance(seconds, Durations):
        sample, count, mean, top = seconds.sample(), seconds.count, seconds.total / seconds.count, seconds.max
    else:
        sample = np.asarray(seconds)
        count, mean, top = len(sample), float(sample.mean()), float(sample.max())
    p50, p90, p99 = np.percentile(sample * 1000, [50, 90, 99])
    return {"count": count, "mean_ms": round(mean * 1000, 3), "p50_ms": round(float(p50), 3),
            "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3), "max_ms": round(top * 1000, 3)}


class StageTimer:
    """Collects durations per stage and frame; ``with timer.stage("detect"):`` times one stage, several
    timings of a stage in one frame add up, and :meth:`end_frame` records the frame's totals."""

    def __init__(self):
        self.times: dict[str, Durations] = defaultdict(Durations)
        self.frame: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.frame[name] = self.frame.get(name, 0.0) + seconds

    def end_frame(self) -> dict[str, float]:
        """Record this frame's stage times and return them in milliseconds; starts the next frame."""
        for name, seconds in self.frame.items():
            self.times[name].append(seconds)
        done = {k: round(v * 1000, 3) for k, v in self.frame.items()}
        self.frame = {}
        return done

    def summary(self) -> dict[str, dict]:
        return {name: summarize(self.times[name]) for name in (*STAGES, *sorted(set(self.times) - set(STAGES)))
                if name in self.times}
