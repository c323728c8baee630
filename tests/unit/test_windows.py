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
