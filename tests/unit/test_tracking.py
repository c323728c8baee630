"""The IoU tracker: ids kept across frames, ages smoothed, tracks expired."""
from __future__ import annotations

import pytest

from firmware_host.detect.tracking import IouTracker
from firmware_host.infer.predictor import Prediction


def test_tracker_keeps_ids_and_smooths():
    tracker = IouTracker(alpha=0.5, max_missed=1)
    p = lambda age: Prediction(age, 2.0, 0.9)  # noqa: E731
    a = tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)], [p(30), p(60)])
    b = tracker.update([(205, 2, 50, 50), (4, 3, 50, 50)], [p(70), p(40)])
    assert [t.id for t in a] == [1, 2] and [t.id for t in b] == [2, 1]
    assert b[1].age == pytest.approx(35) and b[0].age == pytest.approx(65)
    tracker.update([], [])
    tracker.update([], [])
    assert tracker.update([(0, 0, 50, 50)], [p(30)])[0].id == 3  # expired after max_missed frames
