"""edge-age: face age and gender estimation from training to small devices.

Grouped by role: ``data`` < ``eval`` < ``report`` < ``train`` < ``bench`` < ``cli`` (imports point down), beside
``conversion`` (the edge-age side of ``edge-age convert``) and ``members`` (the model family)."""
from importlib.metadata import PackageNotFoundError, version

import firmware_host  # noqa: F401  (sets the one pixel limit before OpenCV loads)

try:
    __version__ = version("edge-age")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"
