"""On-device runtime of edge-age, and the basics every layer shares (errors, atomic writes, JSON and CSV, paths
and environment, hashing, the model-output contract, logging): LiteRT, numpy and OpenCV only, never TensorFlow or
matplotlib, and nothing of ``edge_age`` or ``converters``."""
import os

MAX_IMAGE_PIXELS = 50_000_000
"""Images with more pixels are refused, unread, by every command (a 1 MB PNG can decode to gigabytes).
OpenCV reads its own limit once, when it loads: set here, before any module imports cv2.
``OPENCV_IO_MAX_IMAGE_PIXELS`` in the environment overrides it."""
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
