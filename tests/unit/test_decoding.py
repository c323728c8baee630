"""Decoding model outputs as the sidecar says, and BlazeFace's anchor grid."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_host.detect.blazeface import anchors
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.predictor import decode_age


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


def test_blazeface_anchor_grid():
    a = anchors()
    assert a.shape == (896, 2) and a.min() > 0 and a.max() < 1
    assert np.allclose(a[0], [1 / 32, 1 / 32]) and np.allclose(a[512], [1 / 16, 1 / 16])
