"""Raw-like test inputs made from the shared 200x200 chips, and a Python that cannot import TensorFlow."""
from __future__ import annotations

from pathlib import Path

from edge_age.data.scenes import read_chips
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
