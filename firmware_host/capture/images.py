"""Reading image files and bytes with one pixel limit for every command.

The size is read from the header first (PNG, JPEG, GIF, BMP, WebP) so that an oversized image is refused
before it is decoded; OpenCV's own limit (set in ``firmware_host/__init__.py``) covers the other formats.
"""
from __future__ import annotations

import contextlib
import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

# Files read as images, in a dataset folder or archive as in a folder of photos (what OpenCV decodes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def max_pixels() -> int:
    """The pixel limit in force (``OPENCV_IO_MAX_IMAGE_PIXELS``, by default ``MAX_IMAGE_PIXELS``)."""
    return int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"])


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF, BMP or WebP, else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
    return None


def too_large(data: bytes) -> str | None:
    """Why ``data`` is refused for its size, or None."""
    size = header_size(data)
    if size and size[0] * size[1] > max_pixels():
        return f"over the pixel limit ({size[0]}x{size[1]} pixels; the limit is {max_pixels():,})"
    return None


def decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> tuple[np.ndarray | None, str | None]:
    """The image in ``data`` and None, or None and why not (empty, over the pixel limit, not decodable)."""
    if not data:
        return None, "empty file (0 bytes)"
    if reason := too_large(data):
        return None, reason
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:  # OpenCV's own limit, for formats whose header is not read here
        return None, f"over the pixel limit ({max_pixels():,})" if "PIXELS" in str(exc) else "not a decodable image"
    if image is None or not image.size:
        return None, "not a decodable image"
    return image, None


def read(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> tuple[np.ndarray | None, str | None]:
    """:func:`decode` of a file; one that cannot be read gives its reason (a dangling link, no permission, a FIFO
    or device, which would block or never end)."""
    with contextlib.suppress(OSError):  # a failed stat: reading says why
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, "not a regular file (a FIFO, socket or device)"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    return decode(data, flags)
