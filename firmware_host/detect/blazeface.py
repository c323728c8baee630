"""MediaPipe BlazeFace (short range) on the LiteRT interpreter: letterbox, anchors, decode, NMS.

The model takes 128x128 RGB in [-1, 1] and gives, per anchor, a score logit and 16 numbers:
box centre and size, then six keypoints (eyes, nose tip, mouth centre, ear tragions), all in
input pixels relative to the anchor centre (MediaPipe's face_detection_short_range graph).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from firmware_host.detect.detection import Face
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.interpreter import make_interpreter
from firmware_host.infer.preprocess import normalize

SIZE = 128
STRIDES = (8, 16, 16, 16)
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


def anchors(size: int = SIZE, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1]: two per cell and per layer, layers of equal stride merged."""
    centres = []
    i = 0
    while i < len(strides):
        same = sum(1 for s in strides[i:] if s == strides[i])
        grid = size // strides[i]
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, 2 * same, axis=0))
        i += same
    return np.concatenate(centres).astype(np.float32)


class BlazeFaceDetector:
    """BlazeFace short range: faces within about two metres, six landmarks each."""

    name = "blazeface"

    def __init__(self, model: str | os.PathLike, score: float = 0.5, nms: float = 0.3, threads: int = 1):
        self.interpreter = make_interpreter(model, threads=threads)
        detail = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        if tuple(detail["shape"][1:]) != (SIZE, SIZE, 3) or len(outputs) != 2:
            raise EdgeAgeError(f"{model} is not a BlazeFace short-range model (input {tuple(detail['shape'])})")
        self.input = detail["index"]
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        self.boxes, self.scores = by_width.get(16), by_width.get(1)
        self.anchors = anchors()
        self.threshold, self.nms = score, nms

    def detect(self, bgr: np.ndarray) -> list[Face]:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        scale = SIZE / max(h, w)
        pad_x, pad_y = (SIZE - w * scale) / 2, (SIZE - h * scale) / 2
        matrix = np.float32([[scale, 0, pad_x], [0, scale, pad_y]])
        square = cv2.warpAffine(rgb, matrix, (SIZE, SIZE), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        self.interpreter.set_tensor(self.input, normalize(square)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.boxes)[0]
        scores = 1 / (1 + np.exp(-self.interpreter.get_tensor(self.scores)[0, :, 0].astype(np.float64)))
        keep = scores >= self.threshold
        if not keep.any():
            return []
        raw, scores, centres = raw[keep], scores[keep], self.anchors[keep] * SIZE
        points = raw[:, 4:].reshape(-1, 6, 2) + centres[:, None, :]
        cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
        boxes = np.stack([cx - raw[:, 2] / 2, cy - raw[:, 3] / 2, raw[:, 2], raw[:, 3]], axis=1)
        boxes = (boxes - [pad_x, pad_y, 0, 0]) / scale
        points = (points - [pad_x, pad_y]) / scale
        chosen = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.threshold, self.nms)
        return [Face(tuple(float(v) for v in boxes[i]), float(scores[i]),
                     {n: (float(p[0]), float(p[1])) for n, p in zip(LANDMARKS, points[i])})
                for i in np.ravel(chosen)]
