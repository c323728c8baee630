"""edge-age: face age and gender estimation from training to small devices.

``edge_age.load("s").predict("photo.jpg")``: the faces of a photo with their ages and genders (``edge_age.api``,
loaded on first use, runtime only).

Grouped by role: ``data`` < ``eval`` < ``report`` < ``train`` < ``bench`` < ``cli`` (imports point down), beside
``conversion`` (the edge-age side of ``edge-age convert``), ``members`` (the model family) and ``api``."""
from importlib.metadata import PackageNotFoundError, version

import firmware_host  # noqa: F401  (sets the one pixel limit before OpenCV loads)

try:
    __version__ = version("edge-age")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"

__all__ = ["load", "__version__"]


def __getattr__(name: str):
    """``edge_age.load`` imported on first use, so that ``import edge_age`` stays light."""
    if name == "load":
        from edge_age.api import load
        return load
    raise AttributeError(f"module 'edge_age' has no attribute {name!r}")
