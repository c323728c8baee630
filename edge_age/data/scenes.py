"""Raw-like photos and videos made from face chips, for measuring detection and alignment.

A chip is pasted into a larger frame at a random position, scale and small rotation, with
feathered edges over a smooth random background: the model then sees a face only through the
detector and the aligner, as it would from a camera.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_age.data.names import parse_name
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json


@dataclass
class Chip:
    """A face chip (BGR) with its file name and labels."""

    name: str
    image: np.ndarray
    age: int
    gender: int


def read_chips(folder: Path, names: list[str] | None = None, count: int | None = None, seed: int = 0) -> list[Chip]:
    """``count`` chips (all if None) drawn with ``seed`` from the given names, or from every usable name in the
    folder."""
    folder = Path(folder)
    if not folder.is_dir():
        hint = ": extract the archive first" if folder.is_file() else ""
        raise EdgeAgeError(f"{folder} is not a folder of face chips{hint}")
    if names is None:
        names = sorted(n for n in (p.name for p in folder.iterdir()) if parse_name(n).usable)
    if count is not None and count < len(names):
        names = [names[i] for i in sorted(np.random.default_rng(seed).choice(len(names), count, replace=False))]
    chips = []
    for name in names:
        image = cv2.imread(str(folder / name))
        labels = parse_name(name)
        if image is not None and labels.usable:
            chips.append(Chip(name, image, labels.age, labels.gender))
    if not chips:
        raise EdgeAgeError(f"no readable, labelled chips in {folder}")
    return chips


def background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field with a little grain, ``size`` = (width, height)."""
    w, h = size
    coarse = rng.uniform(40, 215, (4, 5, 3)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, chip: np.ndarray, centre: tuple[float, float], side: float, angle: float) -> tuple:
    """Blend ``chip`` into ``frame`` (in place) centred at ``centre``, ``side`` pixels wide, rotated by
    ``angle`` degrees; returns the pasted chip's axis-aligned box (x, y, w, h), clipped to the frame."""
    h, w = chip.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, side / w)
    matrix[:, 2] += np.float32(centre) - np.float32([w / 2, h / 2])
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpAffine(chip, matrix, size, flags=cv2.INTER_AREA if side < w else cv2.INTER_LINEAR)
    mask = np.zeros((h, w), np.float32)
    edge = max(2, w // 50)  # a thin feather: wider ones erase the hair and ears the model reads
    mask[edge:-edge, edge:-edge] = 1
    mask = cv2.GaussianBlur(mask, (0, 0), edge / 2)
    alpha = cv2.warpAffine(mask, matrix, size)[..., None]
    frame[:] = (frame * (1 - alpha) + warped * alpha).astype(np.uint8)
    corners = cv2.transform(np.float32([[[0, 0], [w, 0], [0, h], [w, h]]]), matrix)[0]
    x0, y0 = np.clip(corners.min(0), 0, size), np.clip(corners.max(0), 0, size)
    return tuple(float(v) for v in (x0[0], x0[1], y0[0] - x0[0], y0[1] - x0[1]))


def make_photos(chips: list[Chip], out: Path, size=(640, 480), sides=(90, 260), *, max_angle: float = 12.0,
                seed: int = 0, grey_every: int = 0) -> Path:
    """One photo per chip at a random place, scale and rotation; writes the photos, ``labels.csv``
    (photo, labels, pasted box) and ``chips.csv`` (the same faces by chip name, to score the chips
    themselves). ``grey_every`` > 0 makes every n-th photo greyscale. Returns the labels file.
    """
    out = atomic.writable_dir(out)
    rng = np.random.default_rng(seed)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["file", "age", "gender", "x", "y", "w", "h", "chip"])
    for i, chip in enumerate(chips):
        frame = background(size, rng)
        side = float(rng.uniform(*sides))
        margin = side * 0.6
        centre = (rng.uniform(margin, size[0] - margin), rng.uniform(margin, size[1] - margin))
        box = paste(frame, chip.image, centre, side, float(rng.uniform(-max_angle, max_angle)))
        if grey_every and i % grey_every == grey_every - 1:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        name = f"{Path(chip.name).name.split('.')[0]}.jpg"
        atomic.write_bytes(out / name, cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
        writer.writerow([name, chip.age, chip.gender, *(round(v, 1) for v in box), chip.name])
    atomic.write_text(out / "chips.csv", "file,age,gender\n" + "".join(f"{c.name},{c.age},{c.gender}\n" for c in chips))
    return atomic.write_text(out / "labels.csv", rows.getvalue())


def tracks(count: int, frames: int, size=(640, 480), seed: int = 0, churn: bool = True) -> list[dict]:
    """Straight paths for ``count`` faces: with ``churn`` (and ``count`` > 1) the first leaves the frame
    half-way and the last enters then; the others drift inside. Each: ``start``/``end`` frame,
    ``from``/``to`` centre, ``side``."""
    rng = np.random.default_rng(seed)
    w, h = size
    side = min(w / (count + 1.5), h / 2.2, 180.0)
    paths = []
    for i in range(count):
        y = h * (i + 1) / (count + 1) if count > 2 else h / 2
        x = w * (i + 1) / (count + 1)
        start, end = 0, frames
        to = (x + rng.uniform(-0.05, 0.05) * w, y + rng.uniform(-0.05, 0.05) * h)
        origin = (x, y)
        if churn and i == 0 and count > 1:  # leaves by the left edge, gone before the end
            to, end = (-side, y), int(frames * 0.6)
        elif churn and i == count - 1 and count > 1:  # enters from the right edge half-way
            origin, start = (w + side, y), int(frames * 0.4)
        paths.append({"start": start, "end": end, "from": origin, "to": to, "side": side})
    return paths


def make_video(chips: list[Chip], out: Path, frames: int = 90, fps: float = 15.0, *, size=(640, 480), seed: int = 0,
               churn: bool = True) -> Path:
    """A video of ``len(chips)`` faces moving along :func:`tracks`; writes it and ``<video>.truth.json``
    (per frame: face index and box). Returns the video path (``.avi``, Motion JPEG)."""
    out = Path(out)
    atomic.writable_dir(out.parent)
    paths = tracks(len(chips), frames, size, seed, churn)
    rng = np.random.default_rng(seed)
    still = background(size, rng)
    truth = []
    with atomic.atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
        if not writer.isOpened():
            raise EdgeAgeError(f"OpenCV cannot write Motion JPEG video to {out}")
        for f in range(frames):
            frame = still.copy()
            faces = []
            for i, (chip, p) in enumerate(zip(chips, paths)):
                if not p["start"] <= f < p["end"]:
                    continue
                t = (f - p["start"]) / max(1, p["end"] - p["start"] - 1)
                centre = tuple(a + (b - a) * t for a, b in zip(p["from"], p["to"]))
                box = paste(frame, chip.image, centre, p["side"], 5.0 * np.sin(f / 7 + i))
                if box[2] > 0 and box[3] > 0:
                    faces.append({"face": i, "box": [round(v, 1) for v in box]})
            writer.write(frame)
            truth.append(faces)
        writer.release()
    write_json(out.with_suffix(".truth.json"), {"size": size, "fps": fps, "chips": [c.name for c in chips],
                                                "paths": paths, "frames": truth}, indent=None)
    return out
