"""Detection on a reduced frame: the detector sees the frame with its longer side at ``size`` pixels,
and its boxes and landmarks are mapped back to full-frame pixels, so alignment still crops from the
full-resolution image.
"""
from __future__ import annotations

import cv2
import numpy as np

from firmware_host.detect.detection import Face
from firmware_host.errors import EdgeAgeError


def check_size(size: int) -> int:
    """``size`` if it is a valid ``--detect-size`` (0 = full frame, else at least 32 pixels)."""
    if size != 0 and not 32 <= size <= 8192:
        raise EdgeAgeError(f"{{}} is the longer side of the frame the detector sees, 32 to 8192 pixels "
                           f"(or 0 for the full frame), not {size}", option="--detect-size", parameter="detect_size")
    return size


def reduce(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """``image`` with its longer side at most ``size`` (0: unchanged), and the factors (x, y) back to full size.

    An integer ratio is area-averaged (as fast as it is exact); any other is interpolated linearly,
    as OpenCV's area resampling of a fractional ratio costs ten times more.
    """
    longer = max(image.shape[:2])
    if not size or size >= longer:
        return image, (1.0, 1.0)
    h, w = image.shape[:2]
    target = (max(1, round(w * size / longer)), max(1, round(h * size / longer)))
    exact = (longer / size).is_integer()
    small = cv2.resize(image, target, interpolation=cv2.INTER_AREA if exact else cv2.INTER_LINEAR)
    return small, (w / target[0], h / target[1])


def rescale(face: Face, fx: float, fy: float) -> Face:
    """``face`` with its box and landmarks stretched by ``fx`` across and ``fy`` down."""
    x, y, w, h = face.box
    return Face((x * fx, y * fy, w * fx, h * fy), face.score,
                {name: (px * fx, py * fy) for name, (px, py) in face.landmarks.items()})


class ReducedDetector:
    """Any detector, run on the frame reduced to ``size`` pixels on its longer side; same name and output."""

    def __init__(self, detector, size: int):
        self.detector, self.detect_size = detector, check_size(size)
        self.name = detector.name

    def detect(self, bgr: np.ndarray) -> list[Face]:
        small, (fx, fy) = reduce(bgr, self.detect_size)
        faces = self.detector.detect(small)
        return faces if small is bgr else [rescale(f, fx, fy) for f in faces]
