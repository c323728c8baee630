"""Drawing on frames: face boxes with track id, age ± spread and gender, and the frame rate."""
from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
FEMALE, MALE = (180, 105, 255), (255, 160, 60)  # BGR


def label(age: float, age_std: float, female: float, track: int | None = None) -> str:
    """``'#3 34+-5 F 92%'``: track, age and its spread, gender and the confidence in it (Hershey fonts are ASCII)."""
    gender, confidence = ("F", female) if female >= 0.5 else ("M", 1 - female)
    return f"{'' if track is None else f'#{track} '}{age:.0f}+-{age_std:.0f} {gender} {confidence:.0%}"


def draw_face(image: np.ndarray, box: tuple, text: str, female: float) -> None:
    x, y, w, h = (int(round(v)) for v in box)
    colour = FEMALE if female >= 0.5 else MALE
    cv2.rectangle(image, (x, y), (x + w, y + h), colour, 2)
    scale = max(0.4, min(1.0, w / 160))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    top = max(0, y - th - base - 4)
    cv2.rectangle(image, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
    cv2.putText(image, text, (x + 2, top + th + 2), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_status(image: np.ndarray, text: str) -> None:
    cv2.putText(image, text, (8, 20), FONT, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (8, 20), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
