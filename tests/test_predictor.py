"""Decoding model outputs as the sidecar says, and one model file driven through the device predictor."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_host.errors import EdgeAgeError
from firmware_host.predictor import AgeGenderModel, decode_age
from tests.scenes import chips


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


def test_float_and_int8_files_agree_through_the_predictor(converted):
    import cv2
    faces = np.stack([cv2.resize(c.image[..., ::-1], (32, 32), interpolation=cv2.INTER_AREA) for c in chips(16,
                                                                                                            seed=8)])
    float_model = AgeGenderModel(converted / "age_gender_float32.tflite")
    int8_model = AgeGenderModel(converted / "age_gender_int8-qat.tflite")
    assert int8_model.info.input_dtype == "int8" and float_model.info.input_dtype == "float32"
    a, b = float_model.predict(faces), int8_model.predict(faces)
    assert len(a) == len(b) == 16 and all(0 <= p.female <= 1 and p.age_std >= 0 for p in a + b)
    assert int8_model.predict(faces[:0]) == []
    assert float_model.coverage()["fraction"] == 1.0
