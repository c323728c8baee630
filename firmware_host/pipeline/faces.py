"""One image in, faces out: detect, align each face into a chip, predict age and gender in one batch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_host.detect.align import crop
from firmware_host.detect.detection import Face
from firmware_host.infer.predictor import AgeGenderModel, Prediction
from firmware_host.pipeline.stages import StageTimer


@dataclass
class FaceResult:
    face: Face
    prediction: Prediction


def detect_and_crop(image: np.ndarray, detector, size: int, timer: StageTimer | None = None,
                    *, min_size: int = 0, resolution: int | None = None) -> tuple[list[Face], np.ndarray]:
    """Faces at least ``min_size`` pixels wide, and their chips (N, size, size, 3) uint8 RGB."""
    timer = timer or StageTimer()
    faces = detect(image, detector, timer, min_size)
    return faces, crop_faces(image, faces, size, detector.name, timer, resolution=resolution)


def detect(image: np.ndarray, detector, timer: StageTimer, min_size: int = 0) -> list[Face]:
    """Faces at least ``min_size`` pixels wide, timed as stage ``detect``."""
    with timer.stage("detect"):
        return [f for f in detector.detect(image) if f.box[2] >= min_size]


def crop_faces(image: np.ndarray, faces: list[Face], size: int, detector: str, timer: StageTimer, *,
               resolution: int | None = None) -> np.ndarray:
    """The aligned chips (N, size, size, 3) uint8 RGB of ``faces`` found by ``detector`` (its name)."""
    with timer.stage("preprocess"):
        return (np.stack([crop(image, f, size, detector, resolution) for f in faces]) if faces
                else np.zeros((0, size, size, 3), np.uint8))


def analyse(image: np.ndarray, detector, model: AgeGenderModel, timer: StageTimer | None = None,
            min_size: int = 0) -> list[FaceResult]:
    """Every face in ``image`` with its age and gender."""
    timer = timer or StageTimer()
    return predict_faces(image, detect(image, detector, timer, min_size), detector.name, model, timer)


def predict_faces(image: np.ndarray, faces: list[Face], detector: str, model: AgeGenderModel,
                  timer: StageTimer) -> list[FaceResult]:
    """Age and gender of ``faces`` (found by ``detector``, its name) in ``image``: all chips in one invoke."""
    chips = crop_faces(image, faces, model.size, detector, timer, resolution=model.resolution)
    if not faces:
        return []
    with timer.stage("infer"):
        outputs = model.infer(chips)
    with timer.stage("postprocess"):
        predictions = model.decode(outputs)
    return [FaceResult(f, p) for f, p in zip(faces, predictions)]


def largest(results: list[FaceResult]) -> FaceResult | None:
    """The face with the largest box: the subject of a labelled photo."""
    return max(results, key=lambda r: r.face.box[2] * r.face.box[3], default=None)
