"""``edge-age predict``: faces, ages and genders in image files, annotated copies and a table of results."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import cv2

from firmware_host.capture.sources import ImageSource
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json
from firmware_host.pipeline.estimator import AgeEstimator
from firmware_host.pipeline.stages import StageTimer
from firmware_host.sinks.overlay import draw_face, label

COLUMNS = ["file", "face", "x", "y", "w", "h", "score", "age", "age_std", "female", "gender", "annotated"]
JPEG_SUFFIXES = (".jpg", ".jpeg")


def relative_names(files: list[Path]) -> list[str]:
    """Each file's path relative to the folder all of them share: unique, and the bare name when they
    share one folder (camera folders reuse names such as ``IMG_0001.jpg``)."""
    paths = [Path(os.path.normpath(f.absolute())) for f in files]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    return [p.relative_to(root).as_posix() for p in paths]


def annotated_name(name: str) -> str:
    """Where the annotated copy of the input ``name`` goes (relative to ``--out``): the same path, as JPEG."""
    return name if name.lower().endswith(JPEG_SUFFIXES) else name + ".jpg"


def image_files(paths: list[Path]) -> list[Path]:
    """The image files of ``paths`` (files, and the images of folders), each once; an error naming a path that
    does not exist or a folder without an image."""
    for p in paths:
        if not Path(p).exists():
            raise EdgeAgeError(f"{p} does not exist")
    return list(dict.fromkeys(Path(os.path.normpath(f.absolute())) for p in paths for f in ImageSource(Path(p)).files))


def predict_images(paths: list[Path], estimator: AgeEstimator, out: Path, *, crops: bool = False,
                   annotate: bool = True,
                   progress=lambda items, total: items) -> tuple[list[dict], StageTimer, list[str]]:
    """One row per face found (files without a face get a row with ``face`` = -1); annotated images go to ``out``,
    mirroring the inputs' folders (see :func:`relative_names`). With ``crops`` each image is one face, whole.

    Returns the rows, the stage times and the files that could not be read.
    """
    files = image_files(paths)
    out = atomic.writable_dir(out)
    timer, rows, unreadable = StageTimer(), [], []
    for path, name in progress(list(zip(files, relative_names(files))), len(files)):
        frame = next(ImageSource(path).frames(), None)
        if frame is None:
            unreadable.append(name)
            continue
        results = estimator.predict(frame.image, crops=crops, timer=timer)
        timer.end_frame()
        target = annotated_name(name) if annotate and results else ""
        if not results:
            rows.append({"file": name, "face": -1, "annotated": target})
        for i, r in enumerate(results):
            p = r.prediction
            rows.append({"file": name, "face": i, **dict(zip("xywh", (round(v, 1) for v in r.face.box))),
                         "score": round(r.face.score, 3), "age": round(p.age, 2), "age_std": round(p.age_std, 2),
                         "female": round(p.female, 4), "gender": r.gender, "annotated": target})
        if target:
            image = frame.image if frame.image.ndim == 3 else cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
            for r in results:
                draw_face(image, r.face.box, label(r.prediction.age, r.prediction.age_std, r.prediction.female),
                          r.prediction.female)
            atomic.write_bytes(out / target, cv2.imencode(".jpg", image)[1].tobytes())
    return rows, timer, unreadable


def write_rows(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """``faces.csv`` and ``faces.json`` in ``out``."""
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic.file_set(out, "faces") as staging:  # the two tables replace the old pair together
        (staging / "faces.csv").write_text(text.getvalue(), encoding="utf-8")
        write_json(staging / "faces.json", rows)
    return out / "faces.csv", out / "faces.json"
