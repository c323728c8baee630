"""Fitting the age decoding on validation faces: a monotone map that lowers the MAE of a biased model (on the faces
it was fitted on and on fresh ones), none for a calibrated one, the median chosen where far tails pull the mean."""
from __future__ import annotations

import numpy as np
import pytest

from edge_age.eval.correction import fit_age_decoding, monotone_map
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.contract import ages_from_output
from firmware_host.infer.postprocess import AgeDecoding

AGES = np.arange(117)


def biased_model(n: int, seed: int, tail: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model that pulls every age toward 35 (a distribution 5 years wide around 35 + 0.6 (age - 35),
    plus a share of uniform mass over 70..116 drawn up to ``tail`` face by face), and the true ages."""
    rng = np.random.default_rng(seed)
    true = rng.integers(1, 80, n).astype(np.float64)
    centre = 35 + 0.6 * (true - 35) + rng.normal(0, 2, n)
    p = np.exp(-0.5 * ((AGES[None] - centre[:, None]) / 5.0) ** 2)
    p /= p.sum(axis=1, keepdims=True)
    share = rng.uniform(0, tail, (n, 1))
    p = (1 - share) * p + share * (AGES[None] >= 70) / (AGES >= 70).sum()
    return np.log(p + 1e-12), true


def mae(logits, true, decoding) -> float:
    return float(np.mean(np.abs(ages_from_output(logits, decoding) - true)))


def test_the_map_is_monotone_and_lowers_the_mae_of_a_biased_model():
    val, val_true = biased_model(2000, seed=1)
    decoding = fit_age_decoding(val, val_true, source="model.keras")
    x, y = decoding["correction"]["x"], decoding["correction"]["y"]
    assert len(x) == len(y) >= 2 and all(b > a for a, b in zip(x, x[1:])) and all(b >= a for a, b in zip(y, y[1:]))
    fit = decoding["fit"]
    assert fit["side"] == "val" and fit["faces"] == 2000 and fit["source"] == "model.keras"
    assert set(fit["val_mae"]) == {"mean", "median", "mean_corrected_cv", "median_corrected_cv", "chosen"}
    fitted = AgeDecoding.from_dict(decoding)
    assert fit["val_mae"]["chosen"] == pytest.approx(mae(val, val_true, fitted), abs=1e-3)
    assert fit["val_mae"]["chosen"] < min(fit["val_mae"]["mean"], fit["val_mae"]["median"]) - 2
    test, test_true = biased_model(2000, seed=2)  # faces it never saw
    assert mae(test, test_true, fitted) < mae(test, test_true, AgeDecoding()) - 2


def test_the_median_is_chosen_where_far_tails_pull_the_mean():
    val, val_true = biased_model(1000, seed=3, tail=0.4)
    decoding = fit_age_decoding(val, val_true)
    assert decoding["method"] == "median"
    assert decoding["fit"]["val_mae"]["median"] < decoding["fit"]["val_mae"]["mean"]
    values = fit_age_decoding(val[:, :1] * 0 + val_true[:, None] + 3, val_true)  # a regression head: the mean only
    assert values["method"] == "mean" and "median" not in values["fit"]["val_mae"]
    assert values["fit"]["val_mae"]["chosen"] < 0.5 < 2.9 < values["fit"]["val_mae"]["mean"]


def test_a_calibrated_model_keeps_its_ages():
    rng = np.random.default_rng(4)
    centre = rng.uniform(5, 85, 2000)
    true = np.round(centre + rng.normal(0, 4, 2000))  # the prediction is the true age's expectation
    logits = -0.5 * ((AGES[None] - centre[:, None]) / 3.0) ** 2
    decoding = fit_age_decoding(logits, true)
    assert decoding["correction"] is None, decoding["fit"]["val_mae"]
    assert decoding["fit"]["val_mae"]["chosen"] == min(decoding["fit"]["val_mae"][m] for m in ("mean", "median"))
    x, y = monotone_map(centre, true)
    assert np.max(np.abs(np.interp([20, 40, 60], x, y) - [20, 40, 60])) < 2


def test_too_few_or_identical_predictions_fit_nothing():
    val, val_true = biased_model(10, seed=6)
    with pytest.raises(EdgeAgeError, match="10 validation faces are too few"):
        fit_age_decoding(val, val_true)
    same = np.tile(val[:1], (40, 1))
    with pytest.raises(EdgeAgeError, match="gives every one of the 40 faces the age"):
        fit_age_decoding(same, np.arange(40.0))
