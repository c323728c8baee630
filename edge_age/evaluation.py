"""``edge-age evaluate``: accuracy of a Keras (float or QAT) or TFLite model on labelled faces."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_age.data.faceset import load_faces
from edge_age.metrics import age_confusion, age_metrics, breakdown
from edge_age.progress import track
from firmware_host import atomic
from firmware_host.errors import EdgeAgeError
from firmware_host.postprocess import expected_age


@dataclass
class Labelled:
    """Faces to evaluate on, with their labels (``-1`` where unknown)."""

    images: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    races: np.ndarray
    files: list[str]


def _ages_from_output(age: np.ndarray) -> np.ndarray:
    """Expected age from logits over ages, or the value of a regression head."""
    return expected_age(age)[0] if age.shape[-1] > 1 else age[:, 0].astype(np.float64)


def predict_keras(model, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(age, gender probability) for uint8 RGB faces."""
    from firmware_host.preprocess import normalize
    ages, genders = [], []
    for start in range(0, len(images), batch):
        out = model(normalize(np.asarray(images[start:start + batch])), training=False)
        age = next(v for k, v in out.items() if k.endswith("age"))
        gender = next(v for k, v in out.items() if k.endswith("gender"))
        ages.append(_ages_from_output(np.asarray(age)))
        genders.append(np.asarray(gender)[:, 0])
    return np.concatenate(ages), np.concatenate(genders)


def predict_tflite(path: Path, images: np.ndarray, threads: int = 2, batch: int = 64, delegate: str = "cpu",
                   library: str | None = None, device: str | None = None,
                   progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(age, gender probability) from a ``.tflite`` file through LiteRT on ``delegate``; ``progress`` names a
    progress bar over the batches (for slow files)."""
    from firmware_host.interpreter import invoke, make_interpreter, pick_outputs
    interpreter = make_interpreter(path, threads=threads, delegate=delegate, library=library, device=device)
    ages, genders = [], []
    starts = range(0, len(images), batch)
    for start in (track(starts, progress, total=len(starts)) if progress else starts):
        age, gender = pick_outputs(invoke(interpreter, np.asarray(images[start:start + batch])))
        ages.append(_ages_from_output(age))
        genders.append(gender)
    return np.concatenate(ages), np.concatenate(genders)


def score(pred_age, pred_gender, faces: Labelled) -> dict:
    """Metrics, breakdowns and the age-group confusion matrix."""
    has_gender = (faces.genders >= 0).any()
    out = age_metrics(pred_age, faces.ages, pred_gender if has_gender else None, faces.genders if has_gender else None)
    out["breakdown"] = breakdown(pred_age, faces.ages, pred_gender if has_gender else None, faces.genders, faces.races)
    out["age_confusion"] = age_confusion(pred_age, faces.ages)
    return out


def evaluate_arrays(model, faces) -> dict:
    """Score a Keras model on labelled faces (a training ``Arrays`` or a ``Labelled``)."""
    pred_age, pred_gender = predict_keras(model, faces.images)
    return score(pred_age, pred_gender, faces)


def model_input_size(path: Path) -> int:
    """The square input size of a model file, read without running it."""
    if path.suffix == ".tflite":
        from firmware_host.interpreter import input_size, make_interpreter
        return input_size(make_interpreter(path))
    from edge_age.training import load_model
    return int(load_model(path).input_shape[1])


def labelled_faces(data, size: int, split: Path | None = None, subset: str = "test",
                   labels: Path | None = None) -> Labelled:
    """Faces with labels from a split side, a labels CSV, or every readable file name of ``data``."""
    faces = load_faces(data, size=size)
    index = faces.index()
    if split:
        from edge_age.data.split import read_split
        rows = [(r.file, r.age, r.gender, r.race) for r in read_split(split).side(subset)]
    elif labels:
        rows = read_labels(labels)
    else:
        rows = [(n, lab.age, lab.gender, lab.race) for n, lab in zip(faces.names, faces.labels) if lab.usable]
    missing = [r[0] for r in rows if r[0] not in index]
    if missing:
        raise EdgeAgeError(f"{len(missing)} labelled files are not in {faces.root} (first: {missing[0]})")
    if not rows:
        raise EdgeAgeError("no labelled faces to evaluate on")
    idx = np.array([index[r[0]] for r in rows])
    return Labelled(np.asarray(faces.images[idx]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                    np.array([r[3] for r in rows]), [r[0] for r in rows])


def detected_faces(data: Path, size: int, labels: Path, detector, resolution: int | None = None) -> tuple[Labelled, list[str]]:
    """Chips found by ``detector`` (largest face per photo, aligned) in the labelled raw photos of ``data``;
    also the photos where no face was found (left out of the scores)."""
    import cv2

    from firmware_host.faces import detect_and_crop

    rows = read_labels(labels)
    if not rows:
        raise EdgeAgeError(f"labels file {labels} lists no photos")
    chips, kept, missed = [], [], []
    for row in track(rows, "detecting faces", len(rows)):
        image = cv2.imread(str(Path(data) / row[0]), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise EdgeAgeError(f"cannot read photo {Path(data) / row[0]}")
        faces, crops = detect_and_crop(image, detector, size, resolution=resolution)
        if not faces:
            missed.append(row[0])
            continue
        chips.append(crops[int(np.argmax([f.box[2] * f.box[3] for f in faces]))])
        kept.append(row)
    if not kept:
        raise EdgeAgeError(f"the {detector.name} detector found no face in any of the {len(rows)} photos")
    return (Labelled(np.stack(chips), np.array([r[1] for r in kept]), np.array([r[2] for r in kept]),
                     np.array([r[3] for r in kept]), [r[0] for r in kept]), missed)


def read_labels(path: Path) -> list[tuple[str, int, int, int]]:
    """Rows ``(file, age, gender, -1)`` of a CSV with columns ``file``, ``age`` and optionally ``gender``."""
    try:
        reader = csv.DictReader(Path(path).read_text(encoding="utf-8").splitlines())
        if not {"file", "age"} <= set(reader.fieldnames or ()):
            raise EdgeAgeError(f"labels file {path} needs the columns file and age, has {reader.fieldnames}")
        return [(r["file"], int(r["age"]), int(r["gender"]) if r.get("gender", "") != "" else -1, -1) for r in reader]
    except OSError as exc:
        raise EdgeAgeError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EdgeAgeError(f"labels file {path} has a bad value: {exc}") from None


def evaluate_file(model: Path, data, split: Path | None = None, subset: str = "test", labels: Path | None = None,
                  out: Path | None = None, detector=None,
                  resolution: int | None = None) -> tuple[dict, tuple[np.ndarray, np.ndarray, Labelled]]:
    """Score a ``.keras``/``.h5``/``.tflite`` model file; with ``detector``, on faces it finds in raw photos
    listed by ``labels``, cropped at ``resolution`` (default: the sidecar's chip resolution); with ``out``,
    write plots there."""
    model = Path(model)
    if not model.is_file():
        raise EdgeAgeError(f"model file {model} does not exist")
    missed = None
    if detector is not None and resolution is None and model.suffix == ".tflite":
        from firmware_host.model_info import read_info
        resolution = read_info(model).extra.get("chip_resolution")

    def faces_at(size: int) -> Labelled:
        nonlocal missed
        if detector is None:
            return labelled_faces(data, size, split, subset, labels)
        faces, missed = detected_faces(data, size, labels, detector, resolution)
        return faces

    if model.suffix == ".tflite":
        faces = faces_at(model_input_size(model))
        pred_age, pred_gender = predict_tflite(model, faces.images)
    else:
        from edge_age.training import load_model
        keras_model = load_model(model)  # loaded once: its input size, then its predictions
        faces = faces_at(int(keras_model.input_shape[1]))
        pred_age, pred_gender = predict_keras(keras_model, faces.images)
    result = {"model": str(model), **score(pred_age, pred_gender, faces)}
    if detector is not None:
        result["detection"] = {"detector": detector.name, "chip_resolution": resolution, "photos": len(faces.files) + len(missed),
                               "faces_found": len(faces.files), "missed": missed}
    if out:
        from edge_age.plots import error_by_age, predicted_vs_true
        out = atomic.writable_dir(out)
        predicted_vs_true(pred_age, faces.ages, out / "predicted_vs_true.png")
        error_by_age(pred_age, faces.ages, out / "error_by_age.png")
    return result, (pred_age, pred_gender, faces)


def write_json(result: dict, path: Path) -> None:
    atomic.write_text(path, json.dumps(result, indent=1))
