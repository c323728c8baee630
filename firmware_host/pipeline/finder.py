"""The faces of each frame of a stream: detected (on a reduced frame) every N frames, carried forward between.

A face carried forward is inferred like a detected one. The next detection replaces every face carried:
a face it does not find again is dropped, so a face that leaves is gone within N frames.
"""
from __future__ import annotations

import numpy as np

from firmware_host.detect.carry import FlowCarrier
from firmware_host.detect.detection import Face
from firmware_host.errors import EdgeAgeError
from firmware_host.pipeline.defaults import DETECT_EVERY
from firmware_host.pipeline.faces import detect
from firmware_host.pipeline.stages import StageTimer


def check_every(every: int) -> int:
    """``every`` if it is a valid ``--detect-every``."""
    if not 1 <= every <= 1000:
        raise EdgeAgeError(f"{{}} is how many frames share one detection, 1 to 1000, not {every}",
                           option="--detect-every", parameter="every")
    return every


class FaceFinder:
    """Detects with ``detector`` on every ``every``-th frame it is given; carries faces forward on the others.
    Counts the frames given, those detected, and those with a face."""

    def __init__(self, detector, every: int = DETECT_EVERY, min_face: int = 0):
        self.detector, self.every, self.min_face = detector, check_every(every), min_face
        self.carrier = FlowCarrier() if every > 1 else None
        self.frames = self.detected = self.with_faces = 0

    @property
    def carried(self) -> int:
        return self.frames - self.detected

    def find(self, image: np.ndarray, timer: StageTimer) -> list[Face]:
        """The faces in ``image``: stage ``detect`` on detection frames, ``carry`` for following faces."""
        if self.frames % self.every == 0:
            faces = detect(image, self.detector, timer, self.min_face)
            if self.carrier:
                with timer.stage("carry"):
                    self.carrier.seed(image, faces)
            self.detected += 1
        else:
            with timer.stage("carry"):
                faces = self.carrier.step(image)
        self.frames += 1
        self.with_faces += bool(faces)
        return faces
