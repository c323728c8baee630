"""What a face detector returns: the ``Face`` record shared by every detector and by alignment."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Face:
    """A detected face: box ``(x, y, w, h)`` in pixels, score, and named landmarks ``{name: (x, y)}``."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)
