"""The age decoding stored with a model, fitted on the split's validation side (never its test side): the mean or
the median of the age distribution, and a monotone map of that age (isotonic regression of the true ages' medians
over groups of faces with similar predictions, kept as the knots of a piecewise-linear map) when it lowers the
cross-validated MAE there. ``firmware_host.infer.postprocess.decode_age`` applies it everywhere."""
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
FOLDS = 5              # a map is kept only if it lowers the MAE on faces it was not fitted on


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
        raise EdgeAgeError(f"the model gives every one of the {len(predicted)} faces the age {x[0]:.2f}: "
                           "there is no map to fit")
    weights_of_knot = np.bincount(where, weights)
    heights = np.bincount(where, heights * weights) / weights_of_knot
    y = np.round(isotonic_regression(heights, weights=weights_of_knot).x, 3)
    keep = [i for i in range(len(x)) if i in (0, len(x) - 1) or not y[i - 1] == y[i] == y[i + 1]]  # flat runs: ends
    return x[keep].tolist(), y[keep].tolist()


def cross_validated_mae(age_output: np.ndarray, true_ages: np.ndarray, method: str) -> float:
    """MAE of ``method``'s ages through a map fitted without the face, over ``FOLDS`` folds of the faces."""
    folds = np.array_split(np.random.default_rng(0).permutation(len(true_ages)), FOLDS)
    errors = np.empty(len(true_ages))
    for held in folds:
        rest = np.setdiff1d(np.arange(len(true_ages)), held)
        x, y = monotone_map(ages_from_output(age_output[rest], AgeDecoding(method)), true_ages[rest])
        errors[held] = np.abs(ages_from_output(age_output[held], AgeDecoding(method, tuple(x), tuple(y)))
                              - true_ages[held])
    return float(errors.mean())


def fit_age_decoding(age_output: np.ndarray, true_ages: np.ndarray, *, mirror: bool = False, **fit) -> dict:
    """The ``age_decoding`` of a sidecar or ``device.json`` fitted on the validation faces' age outputs and true
    ages (``mirror``: outputs averaged with the mirror images', which the decoding then records). Each method (only
    the mean for a one-value output) is scored as it is and, cross-validated, through a map; the best of these is
    kept, its map (if any) fitted on every face. ``fit`` adds to the record of the fit (``source``,
    ``split_sha256``)."""
    age_output, true_ages = np.asarray(age_output), np.asarray(true_ages, np.float64)
    if len(true_ages) < MIN_FACES:
        raise EdgeAgeError(f"{len(true_ages)} validation faces are too few to fit an age correction on "
                           f"(at least {MIN_FACES})")
    if np.ptp(ages_from_output(age_output)) == 0:
        raise EdgeAgeError(f"the model gives every one of the {len(true_ages)} faces the age "
                           f"{ages_from_output(age_output[:1])[0]:.2f}: there is no map to fit")
    val_mae = {}
    for method in METHODS if age_output.shape[-1] > 1 else ("mean",):
        val_mae[method] = mae(age_output, true_ages, AgeDecoding(method))
        val_mae[f"{method}_corrected_cv"] = cross_validated_mae(age_output, true_ages, method)
    best = min(val_mae, key=val_mae.get)
    method, corrected = best.removesuffix("_corrected_cv"), best.endswith("_corrected_cv")
    correction = None
    if corrected:
        x, y = monotone_map(ages_from_output(age_output, AgeDecoding(method)), true_ages)
        if mae(age_output, true_ages, AgeDecoding(method, tuple(x), tuple(y))) <= val_mae[method]:
            correction = {"x": x, "y": y}  # never worse than none on the faces it was fitted on
    decoding = {"method": method, "correction": correction, **({"mirror": True} if mirror else {})}
    val_mae["chosen"] = mae(age_output, true_ages, AgeDecoding.from_dict(decoding))
    return {**decoding, "fit": {"side": "val", "faces": len(true_ages), **fit,
                                "val_mae": {k: round(v, 4) for k, v in val_mae.items()}}}


def mae(age_output: np.ndarray, true_ages: np.ndarray, decoding: AgeDecoding) -> float:
    return float(np.mean(np.abs(ages_from_output(age_output, decoding) - true_ages)))


def describe_fit(decoding: dict) -> str:
    """One line: the method, the knots and the validation MAEs."""
    fit = decoding["fit"]
    maes = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in fit["val_mae"].items())
    return (f"{AgeDecoding.from_dict(decoding).describe()}; validation MAE {maes} "
            f"({fit['faces']:,} faces)")


def fit_tflite(model: Path, images: np.ndarray, ages: np.ndarray, *, mirror: bool, split_sha256: str) -> dict:
    """The age decoding of a ``.tflite`` file fitted on its own outputs for the validation faces ``images``."""
    from firmware_host.infer.predictor import tflite_outputs
    return fit_age_decoding(tflite_outputs(model, images, mirror=mirror)[0], ages, mirror=mirror,
                            source=Path(model).name, split_sha256=split_sha256)


def fit_model_file(model: Path, data, split: Path, *, mirror: bool = False) -> tuple[dict, Path]:
    """Fit the age decoding of a model file on the validation side of ``split`` (``mirror``: on outputs averaged
    with the mirror images') and store it: a Keras model's in the ``device.json`` beside it (``convert`` and
    ``bundle`` carry it into the sidecars), a ``.tflite``'s in its own sidecar. Returns the decoding and the file
    written."""
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
        read_info(model)  # a file without a valid sidecar has nowhere to keep its decoding
        faces = labelled_faces(data, model_input_size(model), split, "val")
        decoding = fit_tflite(model, faces.images, faces.ages, mirror=mirror, split_sha256=record["split_sha256"])
        return decoding, write_age_decoding(model, decoding)
    from edge_age.train.model_io import load_model, read_device_facts, write_age_decoding
    read_device_facts(model)  # a broken device.json stops before the model runs
    keras_model = load_model(model)
    faces = labelled_faces(data, int(keras_model.input_shape[1]), split, "val")
    decoding = fit_age_decoding(keras_outputs(keras_model, faces.images, mirror=mirror)[0], faces.ages,
                                mirror=mirror, **record)
    return decoding, write_age_decoding(model, decoding)


def fit_after_training(model_path: Path, model, faces, split: Path) -> dict | None:
    """The end of ``train``: fit the float model's age decoding on the validation ``faces`` into ``device.json``
    (too few faces, or nothing to fit such as one age for every face: a warning, and the mean as it is)."""
    from edge_age.eval.evaluation import keras_outputs
    from edge_age.train.model_io import write_age_decoding
    from firmware_host.files.paths import file_sha256
    if len(faces.ages) < MIN_FACES:
        log.warning("%d validation faces are too few to fit an age correction (at least %d): ages stay the mean "
                    "of the distribution", len(faces.ages), MIN_FACES)
        return None
    try:
        decoding = fit_age_decoding(keras_outputs(model, faces.images)[0], faces.ages, source=Path(model_path).name,
                                    split_sha256=file_sha256(split))
    except EdgeAgeError as exc:
        log.warning("no age correction fitted (%s): ages stay the mean of the distribution", exc)
        return None
    write_age_decoding(model_path, decoding)
    log.info("age decoding fitted on the validation side: %s", describe_fit(decoding), extra=STATUS)
    return decoding
