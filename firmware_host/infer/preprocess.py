"""Pixel normalisation, defined once for training, conversion and the device.

Models take RGB faces scaled to [-1, 1]: ``x / 127.5 - 1``. An int8 model with
uint8 input absorbs the same mapping in its input quantization (scale 1/127.5,
zero point 128), so raw 0..255 pixels go in unchanged.
"""
from __future__ import annotations

import numpy as np

COLOR_ORDER = "RGB"
PIXEL_SCALE = 1.0 / 127.5
PIXEL_OFFSET = -1.0
UINT8_INPUT_ZERO_POINT = 128


def normalize(pixels: np.ndarray, scale: float = PIXEL_SCALE, offset: float = PIXEL_OFFSET) -> np.ndarray:
    """Map uint8 RGB pixels (0..255) to float32 ``x * scale + offset`` (by default [-1, 1])."""
    return pixels.astype(np.float32) * np.float32(scale) + np.float32(offset)
