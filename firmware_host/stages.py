"""Per-stage timing of the pipeline: record seconds per stage, summarise as milliseconds percentiles."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

STAGES = ("capture", "detect", "carry", "preprocess", "infer", "postprocess", "draw")


def summarize(seconds: list[float]) -> dict:
    """Count, mean, p50, p90, p99 and max of a list of durations, in milliseconds."""
    if not seconds:
        return {"count": 0}
    ms = np.asarray(seconds) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"count": len(ms), "mean_ms": round(float(ms.mean()), 3), "p50_ms": round(float(p50), 3),
            "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3), "max_ms": round(float(ms.max()), 3)}


class StageTimer:
    """Collects durations per stage and frame; ``with timer.stage("detect"):`` times one stage, several
    timings of a stage in one frame add up, and :meth:`end_frame` records the frame's totals."""

    def __init__(self):
        self.times: dict[str, list[float]] = defaultdict(list)
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
