"""The one path from an image to ages: a detector, the alignment of each face and the age/gender model, behind
``AgeEstimator.predict``. ``edge_age.load()`` builds it, and ``edge-age predict``, ``run`` and ``serve`` use it.

As MediaPipe's tasks do, it is made from an options record (``AgeEstimator.create_from_options``)::

    estimator = AgeEstimator.create_from_options(EstimatorOptions(Path("age_gender_int8-qat.tflite")))
    for face in estimator.predict("photo.jpg"):
        print(face.age, face.female, face.box)
"""
from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_host.capture import images
from firmware_host.detect.detection import Face
from firmware_host.detect.detectors import describe, make_detector
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.predictor import AgeGenderModel
from firmware_host.pipeline.faces import FaceResult, detect, predict_chips, predict_faces, whole_chip
from firmware_host.pipeline.stages import StageTimer


@dataclass(frozen=True)
class EstimatorOptions:
    """What an :class:`AgeEstimator` is made of: the ``.tflite`` model (its ``.json`` sidecar beside it), then
    keywords only."""

    model: Path
    _: KW_ONLY
    detector: str | None = "auto"        # auto (YuNet, bundled), yunet, blazeface, haar; None: crops only
    detector_model: Path | None = None   # the detector's model file, instead of the one found
    detect_size: int = 0                 # the detector sees frames reduced to this longer side (0: full frame)
    min_face: int = 0                    # faces narrower than this many pixels are ignored
    threads: int = 1                     # interpreter threads (and BlazeFace's)
    delegate: str = "cpu"
    delegate_library: str | None = None
    device: str | None = None


class AgeEstimator:
    """Faces, ages and genders of images: ``predict`` on a path or a BGR array. Not thread-safe (one interpreter,
    one detector): give each thread its own."""

    def __init__(self, model: AgeGenderModel, detector, *, min_face: int = 0):
        self.model, self.detector, self.min_face = model, detector, min_face

    @classmethod
    def create_from_options(cls, options: EstimatorOptions) -> AgeEstimator:
        """The model and the detector the options name; one-line errors for a missing or wrong file."""
        model = AgeGenderModel(options.model, options.delegate, options.threads, options.delegate_library,
                               options.device)
        detector = make_detector(options.detector, options.detector_model, options.threads,
                                 detect_size=options.detect_size) if options.detector else None
        return cls(model, detector, min_face=options.min_face)

    def describe(self) -> str:
        """One line: which model and which detector answer."""
        finds = (f"detector {describe(self.detector)}" if self.detector
                 else "no detector: each image is one face chip")
        return f"model {self.model.path.name} ({self.model.info.target}), {finds}"

    def predict(self, image: str | os.PathLike | np.ndarray, *, crops: bool = False,
                timer: StageTimer | None = None) -> list[FaceResult]:
        """Every face in ``image`` (a file, or a BGR or grey uint8 array) with its age and gender; with ``crops``
        the image is a face chip already: one face, the whole image, neither detected nor aligned."""
        timer = timer or StageTimer()
        pixels = read_image(image)
        if crops:
            return self.predict_chip(pixels, timer)
        if self.detector is None:
            raise EdgeAgeError("this estimator was loaded without a detector: it predicts face chips only "
                               "(crops=True)")
        return self.predict_faces(pixels, detect(pixels, self.detector, timer, self.min_face), timer)

    def predict_faces(self, image: np.ndarray, faces: list[Face], timer: StageTimer) -> list[FaceResult]:
        """Age and gender of ``faces`` found in ``image`` (by this detector, or carried forward from it)."""
        return predict_faces(image, faces, self.detector.name, self.model, timer)

    def predict_chip(self, chip: np.ndarray, timer: StageTimer) -> list[FaceResult]:
        """The one face a ready-made chip is, its box the whole image."""
        with timer.stage("preprocess"):
            batch = whole_chip(chip, self.model.size, self.model.resolution)[None]
        face = Face((0.0, 0.0, float(chip.shape[1]), float(chip.shape[0])), 1.0)
        return predict_chips(batch, [face], self.model, timer)


def read_image(image: str | os.PathLike | np.ndarray) -> np.ndarray:
    """A BGR (or grey) uint8 array as it is, or the pixels of an image file; a one-line error naming a file that
    does not exist or does not decode."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise EdgeAgeError(f"an image array must be uint8 BGR (H, W, 3) or grey (H, W), not {image.dtype} "
                               f"{image.shape}")
        return image
    path = Path(image)
    if not path.is_file():
        raise EdgeAgeError(f"{path} does not exist" if not path.exists() else f"{path} is not an image file")
    pixels, reason = images.read(path, cv2.IMREAD_COLOR)
    if pixels is None:
        raise EdgeAgeError(f"{path} is not a readable image ({reason})")
    return pixels
