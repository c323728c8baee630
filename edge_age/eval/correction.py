"""The age decoding stored with a model, fitted on the split's validation side (never its test side): the mean or
the median of the age distribution, whichever scores better there once corrected, and a monotone map of that age
(isotonic regression of the true ages' medians over groups of faces with similar predictions, kept as the
knots of a piecewise-linear map). ``firmware_host.infer.postprocess.decode_age`` applies it everywhere."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.infer.contract import ages_from_output
from firmware_host.infer.postprocess import METHODS, AgeDecoding
from firmware_host.logs import STATUS

log = logging.getLogger(__name__)
MIN_FACES = 20         # fewer validation faces than this fit nothing
FACES_PER_KNOT = 100   # the median of this many true ages is a knot's height
MAX_KNOTS = 32


def monotone_map(predicted: np.ndarray, true: np.ndarray) -> tuple[list[float], list[float]]:
    """Knots (x ascending, y never decreasing) of the monotone map that takes ``predicted`` ages near ``true``:
    faces in groups of equal size by predicted age, each group a knot at its median prediction and the median of
    its true ages, the heights made monotone by a weighted isotonic regression."""
    from scipy.optimize import isotonic_regression
    order = np.argsort(predicted, kind="stable")
    groups = np.array_split(order, min(MAX_KNOTS, max(2, len(order) // FACES_PER_KNOT)))
    x = np.round([np.median(predicted[g]) for g in groups], 2)
    heights = np.array([np.median(true[g]) for g in groups], np.float64)
    weights = np.array([len(g) for g in groups], np.float64)
    x, where = np.unique(x, return_inverse=True)  # groups of one same prediction become one knot
    if len(x) < 2:
        raise EdgeAgeError(f"the model gives every one of the {len(predicted)} validation faces the age {x[0]}: "
                           "there is no map to fit")
    weights_of_knot = np.bincount(where, weights)
    heights = np.bincount(where, heights * weights) / weights_of_knot
    y = np.round(isotonic_regression(heights, weights=weights_of_knot).x, 3)
    keep = [i for i in range(len(x)) if i in (0, len(x) - 1) or not y[i - 1] == y[i] == y[i + 1]]  # flat runs: ends
    return x[keep].tolist(), y[keep].tolist()


def fit_age_decoding(age_output: np.ndarray, true_ages: np.ndarray, **fit) -> dict:
    """The ``age_decoding`` of a sidecar or ``device.json`` fitted on the validation faces' age outputs and true
    ages: for each method (only the mean for a one-value output), its map; the method whose corrected ages score
    the lower MAE is kept. ``fit`` adds to the record of the fit (``source``, ``split_sha256``)."""
    age_output, true_ages = np.asarray(age_output), np.asarray(true_ages, np.float64)
    if len(true_ages) < MIN_FACES:
        raise EdgeAgeError(f"{len(true_ages)} validation faces are too few to fit an age correction on "
                           f"(at least {MIN_FACES})")
    val_mae, fitted = {}, {}
    for method in METHODS if age_output.shape[-1] > 1 else ("mean",):
        ages = ages_from_output(age_output, AgeDecoding(method))
        val_mae[method] = float(np.mean(np.abs(ages - true_ages)))
        x, y = monotone_map(ages, true_ages)
        corrected = ages_from_output(age_output, AgeDecoding(method, tuple(x), tuple(y)))
        fitted[method] = (float(np.mean(np.abs(corrected - true_ages))), x, y)
    method = min(fitted, key=lambda m: fitted[m][0])
    mae, x, y = fitted[method]
    return {"method": method, "correction": {"x": x, "y": y},
            "fit": {"side": "val", "faces": len(true_ages), **fit,
                    "val_mae": {**{m: round(v, 4) for m, v in val_mae.items()}, "corrected": round(mae, 4)}}}


def describe_fit(decoding: dict) -> str:
    """One line: the method, the knots and the validation MAEs."""
    fit = decoding["fit"]
    maes = ", ".join(f"{k} {v:.3f}" for k, v in fit["val_mae"].items())
    return (f"{AgeDecoding.from_dict(decoding).describe()}; validation MAE {maes} "
            f"({fit['faces']:,} faces)")


def fit_model_file(model: Path, data, split: Path) -> tuple[dict, Path]:
    """Fit the age decoding of a model file on the validation side of ``split`` and store it: a Keras model's in
    the ``device.json`` beside it (``convert`` and ``bundle`` carry it into the sidecars), a ``.tflite``'s in its
    own sidecar. Returns the decoding and the file written."""
    from edge_age.eval.evaluation import keras_outputs, labelled_faces, model_input_size
    from firmware_host.files.paths import file_sha256
    model = Path(model)
    if model.suffix not in (".keras", ".h5", ".tflite"):
        raise EdgeAgeError(f"{model} is not a .keras, .h5 or .tflite model file")
    if not model.is_file():
        raise EdgeAgeError(f"model file {model} does not exist")
    if not Path(split).is_file():
        raise EdgeAgeError(f"split file {split} does not exist (make one with 'edge-age data split')")
    record = {"source": model.name, "split_sha256": file_sha256(split)}
    if model.suffix == ".tflite":
        from firmware_host.infer.model_info import read_info, write_age_decoding
        from firmware_host.infer.predictor import tflite_outputs
        read_info(model)  # a file without a valid sidecar has nowhere to keep its decoding
        faces = labelled_faces(data, model_input_size(model), split, "val")
        decoding = fit_age_decoding(tflite_outputs(model, faces.images)[0], faces.ages, **record)
        return decoding, write_age_decoding(model, decoding)
    from edge_age.train.model_io import load_model, read_device_facts, write_age_decoding
    read_device_facts(model)  # a broken device.json stops before the model runs
    keras_model = load_model(model)
    faces = labelled_faces(data, int(keras_model.input_shape[1]), split, "val")
    decoding = fit_age_decoding(keras_outputs(keras_model, faces.images)[0], faces.ages, **record)
    return decoding, write_age_decoding(model, decoding)


def fit_after_training(model_path: Path, model, faces, split: Path) -> dict | None:
    """The end of ``train``: fit the float model's age decoding on the validation ``faces`` into ``device.json``
    (too few faces: a warning, and the mean as it is)."""
    from edge_age.eval.evaluation import keras_outputs
    from edge_age.train.model_io import write_age_decoding
    from firmware_host.files.paths import file_sha256
    if len(faces.ages) < MIN_FACES:
        log.warning("%d validation faces are too few to fit an age correction (at least %d): ages stay the mean "
                    "of the distribution", len(faces.ages), MIN_FACES)
        return None
    decoding = fit_age_decoding(keras_outputs(model, faces.images)[0], faces.ages, source=Path(model_path).name,
                                split_sha256=file_sha256(split))
    write_age_decoding(model_path, decoding)
    log.info("age decoding fitted on the validation side: %s", describe_fit(decoding), extra=STATUS)
    return decoding
