"""One image in, faces out: detect, align each face into a chip, predict age and gender in one batch."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from firmware_host.detect.align import crop
from firmware_host.detect.detection import Face
from firmware_host.infer.predictor import AgeGenderModel, Prediction
from firmware_host.pipeline.stages import StageTimer


@dataclass
class FaceResult:
    """One face and its age and gender: ``box`` (x, y, w, h) in pixels, ``age`` in years, ``female`` the
    probability of female."""

    face: Face
    prediction: Prediction

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.face.box

    @property
    def score(self) -> float:
        return self.face.score

    @property
    def age(self) -> float:
        return self.prediction.age

    @property
    def age_std(self) -> float:
        return self.prediction.age_std

    @property
    def female(self) -> float:
        return self.prediction.female

    @property
    def gender(self) -> str:
        return "F" if self.female >= 0.5 else "M"

    def to_dict(self) -> dict:
        """Plain values for JSON: box, score, age, age_std, female, gender, landmarks."""
        return {"box": [float(v) for v in self.box], "score": self.score, "age": self.age, "age_std": self.age_std,
                "female": self.female, "gender": self.gender,
                "landmarks": {k: [float(x), float(y)] for k, (x, y) in self.face.landmarks.items()}}


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


def whole_chip(image: np.ndarray, size: int, resolution: int | None = None) -> np.ndarray:
    """A ready-made face chip (BGR or grey, any size) as the model's (size, size, 3) uint8 RGB input: resized
    whole, area-averaged down, and through ``resolution`` first when the training chips had fewer pixels."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
    for side in ((resolution, size) if resolution and resolution < size else (size,)):
        shrink = min(rgb.shape[:2]) >= side
        rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return rgb


def predict_chips(chips: np.ndarray, faces: list[Face], model: AgeGenderModel, timer: StageTimer) -> list[FaceResult]:
    """Age and gender of ready chips (N, S, S, 3) uint8 RGB, in one invoke, paired with ``faces``."""
    if not faces:
        return []
    with timer.stage("infer"):
        outputs = model.infer(chips)
    with timer.stage("postprocess"):
        predictions = model.decode(outputs)
    return [FaceResult(f, p) for f, p in zip(faces, predictions)]


def predict_faces(image: np.ndarray, faces: list[Face], detector: str, model: AgeGenderModel,
                  timer: StageTimer) -> list[FaceResult]:
    """Age and gender of ``faces`` (found by ``detector``, its name) in ``image``: all chips in one invoke."""
    chips = crop_faces(image, faces, model.size, detector, timer, resolution=model.resolution)
    return predict_chips(chips, faces, model, timer)


def largest(results: list[FaceResult]) -> FaceResult | None:
    """The face with the largest box: the subject of a labelled photo."""
    return max(results, key=lambda r: r.face.box[2] * r.face.box[3], default=None)
