"""``edge-age predict``: faces, ages and genders in image files, annotated copies and a table of results."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2

from firmware_host import atomic
from firmware_host.capture import ImageSource
from firmware_host.faces import analyse
from firmware_host.overlay import draw_face, label
from firmware_host.stages import StageTimer

COLUMNS = ["file", "face", "x", "y", "w", "h", "score", "age", "age_std", "female", "gender"]


def predict_images(paths: list[Path], model, detector, out: Path, min_face: int = 0, annotate: bool = True,
                   progress=lambda items, total: items) -> tuple[list[dict], StageTimer, list[str]]:
    """One row per face found (files without a face get a row with ``face`` = -1); annotated images go to ``out``.

    Returns the rows, the stage times and the files that could not be read.
    """
    out = atomic.writable_dir(out)
    files = [f for p in paths for f in ImageSource(Path(p)).files]
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        names = [str(f) for f in files]
    timer, rows, unreadable = StageTimer(), [], []
    for path, name in progress(list(zip(files, names)), len(files)):
        source = ImageSource(path)
        frame = next(source.frames(), None)
        if frame is None:
            unreadable.append(name)
            continue
        results = analyse(frame.image, detector, model, timer, min_face)
        timer.end_frame()
        if not results:
            rows.append({"file": name, "face": -1})
        for i, r in enumerate(results):
            p = r.prediction
            rows.append({"file": name, "face": i, **dict(zip("xywh", (round(v, 1) for v in r.face.box))),
                         "score": round(r.face.score, 3), "age": round(p.age, 2), "age_std": round(p.age_std, 2),
                         "female": round(p.female, 4), "gender": "F" if p.female >= 0.5 else "M"})
        if annotate and results:
            image = frame.image if frame.image.ndim == 3 else cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
            for r in results:
                draw_face(image, r.face.box, label(r.prediction.age, r.prediction.age_std, r.prediction.female),
                          r.prediction.female)
            target = out / (Path(name).stem.replace("/", "_") + ".jpg")
            atomic.write_bytes(target, cv2.imencode(".jpg", image)[1].tobytes())
    return rows, timer, unreadable


def write_rows(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """``faces.csv`` and ``faces.json`` in ``out``."""
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return (atomic.write_text(out / "faces.csv", text.getvalue()),
            atomic.write_text(out / "faces.json", json.dumps(rows, indent=1)))
