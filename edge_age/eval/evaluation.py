"""``edge-age evaluate``: accuracy of a Keras (float or QAT) or TFLite model on labelled faces."""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_age.data.faceset import load_faces
from edge_age.data.names import MAX_AGE
from edge_age.eval.metrics import age_confusion, age_metrics, breakdown
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files import atomic
from firmware_host.files.csvio import read_table
from firmware_host.infer.contract import ages_from_output, mirror_averaged, split_outputs
from firmware_host.infer.postprocess import IDENTITY, AgeDecoding
from firmware_host.infer.predictor import predict_tflite
from firmware_host.progress import track

log = logging.getLogger(__name__)
PER_FACE_COLUMNS = ("file", "true_age", "true_gender", "age", "female")  # age, female: the model's, as in predict


@dataclass
class Labelled:
    """Faces to evaluate on, with their labels (``-1`` where unknown)."""

    images: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    races: np.ndarray
    files: list[str]
    unreadable: list[str] = field(default_factory=list)  # labelled files that do not decode, left out
    bad_labels: list[str] = field(default_factory=list)  # "line N: reason" of label rows skipped

    def subset(self, keep: np.ndarray) -> Labelled:
        """The faces at indices ``keep`` (the skipped files and rows stay listed)."""
        return Labelled(self.images[keep], self.ages[keep], self.genders[keep], self.races[keep],
                        [self.files[i] for i in keep], self.unreadable, self.bad_labels)

    def skipped(self) -> dict:
        """What was left out, for a result's JSON."""
        return {"unreadable_files": self.unreadable, "bad_label_rows": self.bad_labels}


def keras_outputs(model, images: np.ndarray, batch: int = 256, *,
                  mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(raw age output, gender probability) of a Keras model for uint8 RGB faces, with ``mirror`` averaged with the
    mirror images' (``contract.mirror_averaged``)."""
    from firmware_host.infer.preprocess import normalize
    ages, genders = [], []
    for start in range(0, len(images), batch):
        out = mirror_averaged(lambda x: model(normalize(x), training=False), np.asarray(images[start:start + batch]),
                              mirror)
        age, gender = split_outputs(out)
        ages.append(np.asarray(age))
        genders.append(np.asarray(gender)[:, 0])
    return np.concatenate(ages), np.concatenate(genders)


def predict_keras(model, images: np.ndarray, batch: int = 256,
                  decoding: AgeDecoding = IDENTITY) -> tuple[np.ndarray, np.ndarray]:
    """(age, gender probability) for uint8 RGB faces, read as ``decoding`` says."""
    age, gender = keras_outputs(model, images, batch, mirror=decoding.mirror)
    return ages_from_output(age, decoding), gender


def write_per_face(path: Path, pred_age: np.ndarray, pred_gender: np.ndarray, faces: Labelled) -> Path:
    """Each face's labels and estimates as CSV (``PER_FACE_COLUMNS``; ``true_gender`` -1 where unknown)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PER_FACE_COLUMNS)
    for row in zip(faces.files, faces.ages, faces.genders, pred_age, pred_gender):
        writer.writerow([row[0], int(row[1]), int(row[2]), f"{float(row[3]):.4f}", f"{float(row[4]):.5f}"])
    return atomic.write_text(path, text.getvalue())


def score(pred_age, pred_gender, faces: Labelled) -> dict:
    """Metrics, breakdowns and the age-group confusion matrix."""
    has_gender = (faces.genders >= 0).any()
    out = age_metrics(pred_age, faces.ages, pred_gender if has_gender else None, faces.genders if has_gender else None)
    out["breakdown"] = breakdown(pred_age, faces.ages, pred_gender if has_gender else None, faces.genders, faces.races)
    out["age_confusion"] = age_confusion(pred_age, faces.ages)
    return out


def evaluate_arrays(model, faces, decoding: AgeDecoding = IDENTITY) -> dict:
    """Score a Keras model on labelled faces (a training ``Arrays`` or a ``Labelled``)."""
    pred_age, pred_gender = predict_keras(model, faces.images, decoding=decoding)
    return score(pred_age, pred_gender, faces)


def model_input_size(path: Path) -> int:
    """The square input size of a model file, read without running it."""
    if path.suffix == ".tflite":
        from firmware_host.infer.interpreter import input_size, make_interpreter
        return input_size(make_interpreter(path))
    from edge_age.train.model_io import load_model
    return int(load_model(path).input_shape[1])


def labelled_faces(data, size: int, split: Path | None = None, subset: str = "test",
                   *, labels: Path | None = None, skip_bad_labels: bool = False) -> Labelled:
    """Faces with labels from a split side, a labels CSV, or every readable file name of ``data``.

    Labelled files that do not decode are left out and listed (a warning says how many)."""
    faces = load_faces(data, size=size)
    index = faces.index()
    bad: list[str] = []
    if split:
        from edge_age.data.split import read_split
        rows = [(r.file, r.age, r.gender, r.race) for r in read_split(split).side(subset)]
    elif labels:
        rows, bad = read_labels(labels, skip_bad_labels)
    else:
        rows = [(n, lab.age, lab.gender, lab.race) for n, lab in zip(faces.names, faces.labels) if lab.usable]
    undecodable = {n for n, _ in faces.unreadable}
    unreadable = [r[0] for r in rows if r[0] in undecodable] if split or labels else sorted(undecodable)
    if unreadable:
        log.warning("%d %sfiles do not decode and are left out (first: %s)", len(unreadable),
                    "labelled " if split or labels else "", unreadable[0])
    rows = [r for r in rows if r[0] not in undecodable]
    missing = [r[0] for r in rows if r[0] not in index]
    if missing:
        raise EdgeAgeError(f"{len(missing)} labelled files are not in {faces.root} (first: {missing[0]})")
    if not rows:
        raise EdgeAgeError("no labelled faces to evaluate on")
    idx = np.array([index[r[0]] for r in rows])
    return Labelled(np.asarray(faces.images[idx]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                    np.array([r[3] for r in rows]), [r[0] for r in rows], unreadable, bad)


def detected_faces(data: Path, size: int, labels: Path, detector, *, resolution: int | None = None,
                   skip_bad_labels: bool = False) -> tuple[Labelled, list[str]]:
    """Chips found by ``detector`` (largest face per photo, aligned) in the labelled raw photos of ``data``;
    also the photos where no face was found (left out of the scores)."""
    import cv2

    from firmware_host.capture import images
    from firmware_host.pipeline.faces import detect_and_crop

    rows, bad = read_labels(labels, skip_bad_labels)
    if not rows:
        raise EdgeAgeError(f"labels file {labels} lists no photos")
    chips, kept, missed = [], [], []
    for row in track(rows, "detecting faces", len(rows)):
        image, reason = images.read(Path(data) / row[0], cv2.IMREAD_UNCHANGED)
        if image is None:
            raise EdgeAgeError(f"cannot read photo {Path(data) / row[0]}: {reason}")
        faces, crops = detect_and_crop(image, detector, size, resolution=resolution)
        if not faces:
            missed.append(row[0])
            continue
        chips.append(crops[int(np.argmax([f.box[2] * f.box[3] for f in faces]))])
        kept.append(row)
    if not kept:
        raise EdgeAgeError(f"the {detector.name} detector found no face in any of the {len(rows)} photos")
    return (Labelled(np.stack(chips), np.array([r[1] for r in kept]), np.array([r[2] for r in kept]),
                     np.array([r[3] for r in kept]), [r[0] for r in kept], bad_labels=bad), missed)


def _label_row(row: dict, seen: dict[str, int]) -> tuple[tuple[str, int, int, int] | None, str]:
    """``(file, age, gender, -1)`` from one CSV row, or None and what is wrong with it."""
    file, age, gender = (row.get(k) or "" for k in ("file", "age", "gender"))
    file, age, gender = file.strip(), age.strip(), gender.strip()
    if not file:
        return None, "no file name"
    if file in seen:
        return None, f"{file} is listed again (first on line {seen[file]})"
    if not age.lstrip("-").isdigit():
        return None, f"age {age!r} is not a whole number of years"
    if not 0 <= int(age) <= MAX_AGE:
        return None, f"age {int(age)} is outside 0..{MAX_AGE}"
    if gender not in ("", "0", "1"):
        return None, f"gender {gender!r} is not 0 (male), 1 (female) or empty (unknown)"
    return (file, int(age), int(gender) if gender else -1, -1), ""


def read_labels(path: Path, skip_bad: bool = False) -> tuple[list[tuple[str, int, int, int]], list[str]]:
    """Rows ``(file, age, gender, -1)`` of a CSV with columns ``file``, ``age`` and optionally ``gender``
    (0 male, 1 female, empty unknown), and the rows skipped as ``line N: reason``.

    A bad row (age outside 0..116, another gender, a file listed twice) stops with its line number,
    or is skipped and counted with ``skip_bad``; a broken CSV (an unterminated quote) always stops."""
    rows, skipped, seen = [], [], {}
    line = 1
    try:
        reader = read_table(path, "labels file", required=("file", "age"), strict=True)
        line = reader.line_num + 1
        for raw in reader:
            row, reason = _label_row(raw, seen)
            if row is None and not skip_bad:
                raise EdgeAgeError(f"labels file {literal(path)}, line {line}: {literal(reason)} ({{}} skips and "
                                   "counts such rows)",
                                  option="--skip-bad-labels", parameter="skip_bad")
            if row is None:
                skipped.append(f"line {line}: {reason}")
            else:
                rows.append(row)
                seen[row[0]] = line
            line = reader.line_num + 1
    except csv.Error as exc:
        raise EdgeAgeError(f"labels file {path}, line {line}: not valid CSV ({exc}; an unterminated quote?)") from None
    if skipped:
        log.warning("labels file %s: %d bad rows skipped (first: %s)", path, len(skipped), skipped[0])
    return rows, skipped


def _check_sidecar(model: Path) -> None:
    """A sidecar beside ``model`` must describe it (as ``predict`` and ``run`` require); a file without one is
    scored with the project's preprocessing."""
    from firmware_host.infer.interpreter import make_interpreter
    from firmware_host.infer.model_info import check_model, read_info, sidecar_path
    if sidecar_path(model).exists():
        check_model(read_info(model), make_interpreter(model, threads=1), model)


def evaluate_file(model: Path, data, split: Path | None = None, subset: str = "test", labels: Path | None = None,
                  *, detector=None, resolution: int | None = None,
                  skip_bad_labels: bool = False) -> tuple[dict, tuple[np.ndarray, np.ndarray, Labelled]]:
    """Score a ``.keras``/``.h5``/``.tflite`` model file; with ``detector``, on faces it finds in raw photos
    listed by ``labels``, cropped at ``resolution`` (default: the sidecar's chip resolution).
    Returns the scores and (predicted ages, probabilities of female, the faces)."""
    model = Path(model)
    if not model.is_file():
        raise EdgeAgeError(f"model file {model} does not exist")
    missed = None
    if detector is not None and resolution is None and model.suffix == ".tflite":
        from firmware_host.infer.model_info import read_info
        resolution = read_info(model).extra.get("chip_resolution")

    def faces_at(size: int) -> Labelled:
        nonlocal missed
        if detector is None:
            return labelled_faces(data, size, split, subset, labels=labels, skip_bad_labels=skip_bad_labels)
        faces, missed = detected_faces(data, size, labels, detector, resolution=resolution,
                                       skip_bad_labels=skip_bad_labels)
        return faces

    if model.suffix == ".tflite":
        from firmware_host.infer.model_info import sidecar_decoding
        _check_sidecar(model)
        decoding = sidecar_decoding(model)
        faces = faces_at(model_input_size(model))
        pred_age, pred_gender = predict_tflite(model, faces.images, decoding=decoding)
    else:
        from edge_age.train.model_io import load_model, read_device_facts
        decoding = AgeDecoding.from_dict(read_device_facts(model).get("age_decoding"))
        keras_model = load_model(model)  # loaded once: its input size, then its predictions
        faces = faces_at(int(keras_model.input_shape[1]))
        pred_age, pred_gender = predict_keras(keras_model, faces.images, decoding=decoding)
    result = {"model": str(model), "age_decoding": decoding.describe(), **score(pred_age, pred_gender, faces),
              **faces.skipped()}
    if detector is not None:
        result["detection"] = {"detector": detector.name, "detect_size": getattr(detector, "detect_size", 0),
                               "chip_resolution": resolution, "photos": len(faces.files) + len(missed),
                               "faces_found": len(faces.files), "missed": missed}
    return result, (pred_age, pred_gender, faces)
