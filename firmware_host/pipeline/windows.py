"""Measurements over time: values binned into fixed windows of wall time, and whether they drifted.

Both ``edge-age bench`` (latency of each inference) and ``edge-age run`` (stage times of each frame)
summarise their windows, so a board that slows down as it heats shows up as a trend.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from firmware_host.errors import EdgeAgeError

DRIFT = 0.10  # a change of more than this fraction from the first window to the last is a drift


def check_seconds(value: float | None, option: str) -> float | None:
    """``value`` if it is None or a positive, finite number of seconds; else a one-line error."""
    if value is not None and not 0 < value < float("inf"):
        raise EdgeAgeError(f"{option} takes a positive number of seconds, not {value}")
    return value


def latency_summary(seconds: list[float], _length: float) -> dict:
    """p50 and p99 in milliseconds and the count of a window's latencies."""
    p50, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 99])
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "n": len(seconds)}


class Windows:
    """Values binned into windows of ``window_s`` seconds, the first starting with the first value.

    ``summary(values, length_s)`` describes a closed window; each summary gets ``t_s``, the window's start
    in seconds since ``offset_s`` before this object was made (for a bench: since the bench started). With
    ``keep``, only the first window and the last ``keep - 1`` are kept (``dropped`` counts the others).
    """

    def __init__(self, window_s: float, summary: Callable[[list, float], dict], offset_s: float = 0.0, *,
                 keep: int | None = None):
        self.window_s, self.summary, self.offset_s, self.keep = window_s, summary, offset_s, keep
        self.origin = time.perf_counter()
        self.start: float | None = None
        self.values: list = []
        self.closed: list[dict] = []
        self.dropped = 0

    def add(self, value, now: float | None = None) -> None:
        """Add ``value`` at ``now`` (``time.perf_counter()``, default: now)."""
        now = time.perf_counter() if now is None else now
        if self.start is None:
            self.start = now
        elif now >= self.start + self.window_s:
            self._close(self.window_s)
            self.start += self.window_s * ((now - self.start) // self.window_s)
        self.values.append(value)

    def finish(self, now: float | None = None) -> list[dict]:
        """Close the window in progress (shorter than the others) and return every window's summary."""
        if self.values:
            self._close(max((time.perf_counter() if now is None else now) - self.start, 1e-9))
        return self.closed

    def _close(self, length: float) -> None:
        t_s = round(self.offset_s + self.start - self.origin, 3)
        self.closed.append({"t_s": t_s, **self.summary(self.values, length)})
        self.values = []
        if self.keep and len(self.closed) > self.keep:
            del self.closed[1]  # the first stays: drift compares it with the last
            self.dropped += 1


def frame_summary(frames: list[dict], length: float) -> dict:
    """A window of pipeline frames (each a dict of stage times in ms): frames per second, p50 of each stage
    over the frames that ran it, and the temperature and CPU clock at its end (None where not exposed)."""
    from firmware_host.infer.system_info import cpu_mhz, temperature_c
    stages: dict[str, list[float]] = {}
    for times in frames:
        for name, ms in times.items():
            stages.setdefault(name, []).append(ms)
    return {"frames": len(frames), "fps": round(len(frames) / length, 2),
            "stages": {name: round(float(np.median(ms)), 3) for name, ms in stages.items()},
            "temperature_c": temperature_c(), "cpu_mhz": cpu_mhz()}


def drift(first: float, last: float, limit: float = DRIFT) -> dict:
    """How ``last`` compares with ``first``: the relative change and whether it exceeds ``limit``."""
    change = (last - first) / first if first else 0.0
    return {"first": round(first, 4), "last": round(last, 4), "change": round(change, 4),
            "drifted": abs(change) > limit}
