"""Decoding model outputs as the sidecar says (mean or median, the monotone correction), and BlazeFace's anchor
grid."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_host.detect.blazeface import anchors
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.postprocess import AgeDecoding, decode_age, expected_age, median_age


def test_decode_age_follows_the_metadata():
    logits = np.full((2, 117), -50.0)
    logits[0, 30] = logits[1, 80] = 50.0
    mean, std = decode_age(logits, "softmax_expectation", [0, 116])
    assert np.allclose(mean, [30, 80]) and np.allclose(std, 0, atol=1e-6)
    assert np.allclose(decode_age(logits, "softmax_expectation", [1, 117])[0], [31, 81])
    values, spread = decode_age(np.array([[33.5], [7.0]]), "value", None)
    assert values.tolist() == [33.5, 7.0] and spread.tolist() == [0, 0]
    with pytest.raises(EdgeAgeError, match="unknown age decoding"):
        decode_age(logits, "ordinal", None)


def test_median_of_the_distribution():
    ages = np.arange(117)
    symmetric = -0.5 * ((ages - 40) / 6.0) ** 2
    skewed = np.log(np.exp(-0.5 * ((ages - 30) / 3.0) ** 2) + 0.02 * (ages > 60))  # a far tail pulls the mean
    logits = np.stack([symmetric, skewed])
    median, (mean, _) = median_age(logits), expected_age(logits)
    assert abs(median[0] - 40) < 1e-6 and abs(mean[0] - 40) < 1e-6
    assert 29 < median[1] < 32 < 35 < mean[1]
    one_hot = np.full((1, 117), -60.0)
    one_hot[0, 25] = 60.0
    assert np.allclose(median_age(one_hot), 25) and np.allclose(median_age(one_hot, 1), 26)


def test_the_correction_maps_monotonically_and_continues_with_slope_one():
    decoding = AgeDecoding("mean", (10.0, 30.0, 60.0), (12.0, 30.5, 58.0))
    ages = np.array([0.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 70.0])
    assert np.allclose(decoding.correct(ages), [2.0, 7.0, 12.0, 21.25, 30.5, 44.25, 58.0, 68.0])
    logits = np.full((3, 117), -60.0)
    logits[0, 20] = logits[1, 116] = logits[2, 1] = 60.0
    corrected, std = decode_age(logits, decoding=decoding)
    assert np.allclose(corrected, [21.25, 114.0, 3.0]) and np.allclose(std, 0, atol=1e-6)
    below = AgeDecoding("median", (10.0, 20.0), (5.0, 15.0))  # 1 year would map to -4: kept within the ages
    assert np.allclose(decode_age(logits[2:], decoding=below)[0], 0)
    with pytest.raises(EdgeAgeError, match="no distribution to take the median of"):
        decode_age(np.array([[33.5]]), "value", None, below)
    shifted = AgeDecoding("mean", (10.0, 40.0), (12.0, 42.0))
    assert np.allclose(decode_age(np.array([[33.5]]), "value", None, shifted)[0], 35.5)


def test_blazeface_anchor_grid():
    a = anchors()
    assert a.shape == (896, 2) and a.min() > 0 and a.max() < 1
    assert np.allclose(a[0], [1 / 32, 1 / 32]) and np.allclose(a[512], [1 / 16, 1 / 16])
