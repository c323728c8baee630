"""Faces carried forward between detections by optical flow.

Points inside each face box (corners, else a grid) are followed from frame to frame by pyramidal
Lucas-Kanade flow on a small grey copy of the frame; the similarity transform (shift, scale,
rotation) that best maps them, robust to points on the background, moves the face's box and
landmarks. A face whose points are lost, or whose centre leaves the frame, is dropped.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from firmware_host.detect.detection import Face
from firmware_host.detect.reduced import reduce

log = logging.getLogger(__name__)

FLOW_SIDE = 320  # longer side of the grey frame the flow runs on
MIN_POINTS = 5  # fewer points followed than this: the face is lost
RESEED_BELOW = 12  # fewer inliers than this: new points are picked inside the moved box
LK = {"winSize": (15, 15), "maxLevel": 2, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}


def _grey(image: np.ndarray, side: int) -> tuple[np.ndarray, tuple[float, float]]:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return reduce(grey, side)


def _points(grey: np.ndarray, box: tuple) -> np.ndarray:
    """Up to 40 trackable corners in the middle of ``box`` (flow-frame pixels), else a 5x5 grid there."""
    x, y, w, h = box
    x0, y0 = int(max(0, x + 0.15 * w)), int(max(0, y + 0.15 * h))
    x1, y1 = int(min(grey.shape[1], x + 0.85 * w)), int(min(grey.shape[0], y + 0.85 * h))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return np.zeros((0, 2), np.float32)
    corners = cv2.goodFeaturesToTrack(grey[y0:y1, x0:x1], 40, 0.01, 3)
    if corners is not None and len(corners) >= RESEED_BELOW:
        return corners.reshape(-1, 2) + np.float32([x0, y0])
    gx, gy = np.meshgrid(np.linspace(x0, x1 - 1, 5), np.linspace(y0, y1 - 1, 5))
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def _moved(face: Face, matrix: np.ndarray, fx: float, fy: float) -> Face:
    """``face`` (full-frame pixels) moved by ``matrix`` (a similarity in flow-frame pixels)."""
    def move(px: float, py: float) -> tuple[float, float]:
        u, v = matrix @ (px / fx, py / fy, 1.0)
        return float(u * fx), float(v * fy)

    x, y, w, h = face.box
    cx, cy = move(x + w / 2, y + h / 2)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return Face((cx - w * scale / 2, cy - h * scale / 2, w * scale, h * scale), face.score,
                {name: move(*point) for name, point in face.landmarks.items()})


class FlowCarrier:
    """Follows the faces of the last detection through the frames that are not detected."""

    def __init__(self, side: int = FLOW_SIDE):
        self.side = side
        self.previous: np.ndarray | None = None
        self.faces: list[Face] = []
        self.points: list[np.ndarray] = []

    def seed(self, image: np.ndarray, faces: list[Face]) -> None:
        """Start following ``faces`` (just detected in ``image``); the faces followed before are forgotten."""
        grey, (fx, fy) = _grey(image, self.side)
        self.previous, self.faces = grey, list(faces)
        self.points = [_points(grey, (f.box[0] / fx, f.box[1] / fy, f.box[2] / fx, f.box[3] / fy)) for f in faces]

    def step(self, image: np.ndarray) -> list[Face]:
        """The faces followed, moved to where they are in ``image``; lost ones are dropped."""
        grey, (fx, fy) = _grey(image, self.side)
        if self.previous is None or not self.faces or self.previous.shape != grey.shape:
            self.previous, self.faces, self.points = grey, [], []
            return []
        counts = [len(p) for p in self.points]
        moved, found = np.zeros((0, 2), np.float32), np.zeros(0, bool)
        if sum(counts):
            moved, status, _ = cv2.calcOpticalFlowPyrLK(self.previous, grey, np.concatenate(self.points), None, **LK)
            moved, found = moved.reshape(-1, 2), status.ravel() == 1
        faces, points, start = [], [], 0
        for face, before, n in zip(self.faces, self.points, counts):
            ok = found[start:start + n]
            after, start = moved[start:start + n][ok], start + n
            if len(after) < MIN_POINTS:
                continue
            matrix, inliers = cv2.estimateAffinePartial2D(before[ok], after, method=cv2.RANSAC,
                                                          ransacReprojThreshold=1.0)
            if matrix is None or int(inliers.sum()) < MIN_POINTS:
                continue
            face = _moved(face, matrix, fx, fy)
            x, y, w, h = face.box
            if not (0 <= x + w / 2 < image.shape[1] and 0 <= y + h / 2 < image.shape[0]):
                continue
            kept = after[inliers.ravel() == 1]
            if len(kept) < RESEED_BELOW:
                kept = _points(grey, (x / fx, y / fy, w / fx, h / fy))
            faces.append(face)
            points.append(kept)
        if len(faces) < len(self.faces):
            log.debug("lost %d of %d faces carried forward", len(self.faces) - len(faces), len(self.faces))
        self.previous, self.faces, self.points = grey, faces, points
        return list(faces)
