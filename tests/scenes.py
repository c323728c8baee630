"""Raw-like test inputs made from the shared 200x200 chips, and a Python that cannot import TensorFlow."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_age.data.scenes import background, paste, read_chips
from tests.conftest import SHARED, UTK200

YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


def chips(count: int, seed: int = 0):
    return read_chips(UTK200, count=count, seed=seed)


def without_tensorflow(tmp: Path) -> dict:
    """Environment whose PYTHONPATH puts first a ``tensorflow`` (and ``tf_keras``) that refuses to import."""
    for name in ("tensorflow", "tf_keras"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
        (tmp / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    return {"PYTHONPATH": str(tmp), "EDGE_AGE_YUNET": str(YUNET)}


def moving_video(out: Path, frames: int, places, seed: int = 0) -> tuple[Path, list[list[dict]]]:
    """A Motion JPEG video of chips placed by ``places``: for chip ``i`` and frame ``f``, ``places[i](f)`` gives
    ``(centre, side, angle)`` or None (not in that frame). Returns the video and each frame's true boxes."""
    faces = chips(len(places), seed=seed)
    still = background((640, 480), np.random.default_rng(seed))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    truth = []
    for f in range(frames):
        frame, boxes = still.copy(), []
        for i, (chip, place) in enumerate(zip(faces, places)):
            where = place(f)
            if where is not None:
                boxes.append({"face": i, "box": paste(frame, chip.image, *where)})
        writer.write(frame)
        truth.append(boxes)
    writer.release()
    return out, truth
