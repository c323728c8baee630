"""Metrics against hand-computed values."""
import math

import numpy as np
import pytest

from edge_age.eval.metrics import age_confusion, age_metrics, breakdown, cs, epsilon_error, mae, roc_auc
from firmware_host.infer.postprocess import expected_age


def test_age_metrics_by_hand():
    pred, true = [10, 22, 30, 47], [12, 20, 36, 47]
    assert mae(pred, true) == pytest.approx((2 + 2 + 6 + 0) / 4)
    assert cs(pred, true) == pytest.approx(3 / 4)
    expected = np.mean([1 - math.exp(-4 / 32), 1 - math.exp(-4 / 32), 1 - math.exp(-36 / 32), 0.0])
    assert epsilon_error(pred, true) == pytest.approx(expected)


def test_gender_and_auc_by_hand():
    out = age_metrics([20, 30, 40, 50], [20, 30, 40, 50], [0.9, 0.4, 0.6, 0.2], [1, 1, 0, -1])
    assert out["gender_accuracy"] == pytest.approx(1 / 3)  # -1 (unknown) is not counted
    # positives 0.9, 0.4; negative 0.6: pairs (0.9>0.6)=1, (0.4>0.6)=0 -> 0.5
    assert out["gender_auc"] == pytest.approx(0.5)
    assert roc_auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert "gender_accuracy" not in age_metrics([1], [1])


def test_confusion_and_breakdown():
    m = age_confusion([1.4, 25, 85], [2, 31, 90])
    assert m[0][0] == 1 and m[4][3] == 1 and m[9][9] == 1 and sum(map(sum, m)) == 3
    b = breakdown([20, 40], [22, 40], [0.8, 0.1], [1, 0], [0, 2])
    assert b["gender"]["female"]["mae"] == 2 and b["race"]["Asian"]["mae"] == 0
    assert b["age_group"]["20-29"]["n"] == 1


def test_expected_age_from_logits():
    logits = np.full((1, 117), -50.0)
    logits[0, 30] = logits[0, 32] = 10.0
    mean, std = expected_age(logits)
    assert mean[0] == pytest.approx(31.0) and std[0] == pytest.approx(1.0)
