"""On-device runtime of edge-age: LiteRT, numpy and OpenCV only, never TensorFlow."""
import os

MAX_IMAGE_PIXELS = 50_000_000
"""Images with more pixels are refused, unread, by every command (a 1 MB PNG can decode to gigabytes).
OpenCV reads its own limit once, when it loads: set here, before any module imports cv2.
``OPENCV_IO_MAX_IMAGE_PIXELS`` in the environment overrides it."""
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
