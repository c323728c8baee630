"""Latency windows and drift on hand-made samples."""
from __future__ import annotations

import pytest

from firmware_host.pipeline.windows import Windows, drift, latency_summary


def test_windows_and_drift():
    """Values are binned by the window they arrive in, summarised, and stamped with the window's start."""
    windows = Windows(1.0, latency_summary, offset_s=5.0)
    base = windows.origin
    for t, value in [(0.0, 0.001), (0.5, 0.003), (0.99, 0.002), (1.2, 0.004), (3.7, 0.010)]:
        windows.add(value, base + t)
    closed = windows.finish(base + 4.0)
    assert [w["t_s"] for w in closed] == [5.0, 6.0, 8.0]  # the empty window (7 s) is skipped
    assert [w["n"] for w in closed] == [3, 1, 1] and closed[0]["p50"] == pytest.approx(2.0)
    assert set(closed[0]) == {"t_s", "p50", "p99", "n"}
    assert drift(10.0, 11.5)["drifted"] and not drift(10.0, 10.9)["drifted"]
    assert drift(10.0, 8.0)["change"] == pytest.approx(-0.2)


def test_a_long_run_keeps_the_first_window_and_the_latest():
    """A week of 10 s windows holds no more than ``keep`` summaries: the first (drift's baseline) and the last."""
    windows = Windows(10.0, latency_summary, keep=4)
    for second in range(0, 100, 5):
        windows.add(0.001 * (1 + second), windows.origin + second)
    closed = windows.finish(windows.origin + 100)
    assert [w["t_s"] for w in closed] == [0.0, 70.0, 80.0, 90.0] and windows.dropped == 6
