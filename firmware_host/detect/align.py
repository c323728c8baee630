"""Face crops with the geometry of the training chips (UTKFace "aligned & cropped").

``CHIP_LANDMARKS`` are where the landmarks sit in a chip, as fractions of its side: the median
of YuNet's landmarks over 998 of the 200x200 UTKFace chips (``tests/test_align.py`` re-measures
them). A face with landmarks is mapped onto them by a similarity transform (eye line level, face
centred, same margin); a face with a box only is cropped by the box-to-chip geometry of its
detector: the median box it finds around 388 of those chips set in a 100-pixel border.
"""
from __future__ import annotations

import cv2
import numpy as np

from firmware_host.detect.detection import Face

CHIP_LANDMARKS = {
    "right_eye": (0.287, 0.293), "left_eye": (0.685, 0.298), "nose": (0.475, 0.508),
    "mouth_right": (0.314, 0.681), "mouth_left": (0.647, 0.686), "mouth": (0.480, 0.684),
}
# Detector box (x, y, w, h) as fractions of the chip side, for faces without landmarks.
CHIP_BOX = {"haar": (-0.02, -0.10, 1.03, 1.03), "default": (0.07, 0.0, 0.86, 0.97)}
ALIGN_WITH = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left", "mouth")


def chip_transform(face: Face, size: int, detector: str = "default") -> np.ndarray:
    """The 2x3 matrix taking image pixels to a ``size`` x ``size`` chip of ``face``."""
    names = [n for n in ALIGN_WITH if n in face.landmarks]
    if len(names) >= 2:
        src = np.float32([face.landmarks[n] for n in names])
        dst = np.float32([CHIP_LANDMARKS[n] for n in names]) * size
        matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if matrix is not None:
            return matrix
    bx, by, bw, _ = CHIP_BOX.get(detector, CHIP_BOX["default"])
    x, y, w, _ = face.box
    scale = size * bw / w
    return np.float32([[scale, 0, size * bx - x * scale], [0, scale, size * by - y * scale]])


def crop(image: np.ndarray, face: Face, size: int, detector: str = "default",
         resolution: int | None = None) -> np.ndarray:
    """An RGB ``size`` x ``size`` chip of ``face`` from a BGR or greyscale image of any size.

    A face larger than the chip is warped at its own resolution, then area-averaged down, so a
    big face gives the same smooth chip as resizing a ready-made one. With ``resolution`` (the
    training chips' own side, when smaller than ``size``) the chip is made at that resolution and
    scaled up, as the training images were: the model then sees the sharpness it learned on.
    """
    if resolution and resolution < size:
        small = crop(image, face, resolution, detector)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
    matrix = chip_transform(face, size, detector)
    native = int(min(size / np.sqrt(abs(np.linalg.det(matrix[:, :2]))), 4 * size))
    side = max(native, size)
    chip = cv2.warpAffine(rgb, matrix * (side / size), (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return chip if side == size else cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)
