"""Decoding model outputs as the sidecar says, and one model file driven through the device predictor."""
from __future__ import annotations

import numpy as np

from firmware_host.infer.predictor import AgeGenderModel
from tests.scenes import chips


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
