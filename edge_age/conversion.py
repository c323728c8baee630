"""The edge-age side of ``edge-age convert``: the float model and its QAT twin, the calibration, validation and
search faces (from a split or the committed manifest), the Keras models' own scores, the chip resolution and the
age decoding of ``device.json`` (for every sidecar), handed to ``converters.driver``; then the report pages, and an
error when a file was rejected."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from converters.driver import (
    DEFAULT_BUDGET,
    DEFAULT_CALIB,
    DEFAULT_INT16X8_FACES,
    DEFAULT_MAX_FLOAT,
    DEFAULT_THRESHOLD,
    Inputs,
    Samples,
    check_options,
    check_outputs,
    needs_workbench,
    run_targets,
)
from converters.targets import DEFAULT_TARGETS, TARGETS, target
from edge_age import __version__
from edge_age.data.calibration import DEFAULT_MANIFEST, choose, read_manifest
from edge_age.data.faceset import load_faces, native_size
from edge_age.data.split import Row, read_split
from edge_age.train.model_io import read_device_facts
from edge_age.train.models import reference_model
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files import atomic
from firmware_host.infer.postprocess import AgeDecoding

log = logging.getLogger(__name__)


def resolve_models(model: Path | None, qat: Path | None) -> tuple[Path, Path | None]:
    """The float model and its QAT twin: the bundled reference, or MODEL and ``--qat`` (default: ``qat.h5`` beside
    it)."""
    if model is None:
        return reference_model("float"), qat or reference_model("qat")
    twin = qat or (model.parent / "qat.h5")
    return model, twin if twin.is_file() else None


def _faces(data, rows: list[Row], size: int, source: str) -> Samples:
    faces = load_faces(data, size=size)
    index = faces.index()
    found = [r for r in rows if r.file in index]
    if not found:
        raise EdgeAgeError(f"none of the {len(rows)} {source} images is in {faces.root}")
    idx = np.array([index[r.file] for r in found])
    return Samples(np.asarray(faces.images[idx]), np.array([r.age for r in found]),
                 np.array([r.gender for r in found]), f"{source} ({len(found)} images)")


def calibration_rows(split: Path | None, n: int, stratified: bool = True, seed: int = 0) -> list[Row]:
    """``n`` training images from the split (stratified or not), else the first ``n`` of the committed manifest."""
    if split:
        return choose(read_split(split), n, seed=seed, stratified=stratified)
    if not stratified:
        raise EdgeAgeError("a random calibration draw needs {} (the committed manifest is stratified)",
                           option="--split", parameter="a split")
    return read_manifest(DEFAULT_MANIFEST)[:n]


def convert(model: Path | None = None, targets: list[str] | None = None, out: Path = Path("runs/convert"),
            data=None, *, split: Path | None = None, calib: int = DEFAULT_CALIB, qat: Path | None = None,
            threshold: float = DEFAULT_THRESHOLD, stratified: bool = True, debug_images: int | None = None,
            budget: float = DEFAULT_BUDGET, max_float: int = DEFAULT_MAX_FLOAT,
            int16x8_faces: int = DEFAULT_INT16X8_FACES, bias_correction: bool = True,
            fit_decoding: bool = False) -> dict:
    """Build, validate and report every target; raise after reporting when a file was rejected.

    ``debug_images`` validation faces (default 100, or all when fewer) serve the per-layer analysis; ``budget``,
    ``max_float`` steer the int8-mixed search; int16x8 is validated on ``int16x8_faces`` faces (0: all) and its
    biases corrected for its weights' mean error unless ``bias_correction`` is off. ``fit_decoding`` fits each 8-bit
    file's age decoding on its own outputs on the split's validation side (mirror-averaged if ``device.json``'s is)
    instead of carrying ``device.json``'s: quantization moves the outputs the Keras model's decoding was fitted on.
    """
    from edge_age.eval.evaluation import predict_keras
    from edge_age.eval.metrics import age_metrics
    from edge_age.report.convert_page import write_reports
    from edge_age.train.model_io import load_model

    names = list(targets or DEFAULT_TARGETS)
    for name in names:
        target(name)
    if fit_decoding and not (data and split):
        raise EdgeAgeError("fitting each file's age decoding needs a split's validation side: pass {} (and --data)",
                           option="--split", parameter="split")
    check_options(debug_images, budget, max_float, int16x8_faces)
    out = atomic.writable_dir(out)
    float_path, qat_path = resolve_models(model, qat)
    models = {"float": load_model(float_path)}
    check_outputs(models["float"], float_path)
    needs_qat = [n for n in names if TARGETS[n].source == "qat"]
    if needs_qat and qat_path is None:
        raise EdgeAgeError(f"targets {', '.join(needs_qat)} need the QAT twin of {literal(float_path)}: pass {{}} "
                           f"or put qat.h5 beside it", option="--qat", parameter="qat")
    if needs_qat:
        models["qat"] = load_model(qat_path)
        check_outputs(models["qat"], qat_path)
        if models["qat"].input_shape != models["float"].input_shape:
            raise EdgeAgeError(f"{qat_path} takes input {models['qat'].input_shape}, {float_path} takes "
                               f"{models['float'].input_shape}: not twins")
    size = int(models["float"].input_shape[1])

    rows = calibration_rows(split, calib, stratified) if data else []
    calibration = _faces(data, rows, size, f"{'stratified' if stratified else 'random'} calibration") if data else None
    if data and split:
        val_rows = read_split(split).side("test")
        validation = _faces(data, val_rows, size, "test split")
    else:
        validation = calibration
    if validation is not None and debug_images is not None and debug_images > len(validation.ages):
        raise EdgeAgeError(f"{{}} {debug_images} is more than the {len(validation.ages)} validation faces",
                           option="--debug-images", parameter="debug_images")
    facts = read_device_facts(float_path)
    decoding = AgeDecoding.from_dict(facts.get("age_decoding"))  # the files decode as their Keras model does
    keras_preds, keras_metrics = {}, {}
    if validation is not None:
        for kind, m in models.items():
            keras_preds[kind] = predict_keras(m, validation.images, decoding=decoding)
            pred_age, pred_gender = keras_preds[kind]
            keras_metrics[kind] = age_metrics(pred_age, validation.ages, pred_gender, validation.genders)

    resolution = facts.get("chip_resolution") or (native_size(data) if data else None)
    if resolution is None:
        log.warning("no chip resolution known for %s (no device.json beside it, no --data): the runtime will crop "
                    "faces at the model's input size", float_path)
    inputs = Inputs(models, {"float": float_path, "qat": qat_path}, calibration, validation, keras_preds,
                    keras_metrics, resolution=resolution, age_decoding=facts.get("age_decoding"))
    val_side = _search_faces(data, split, size, validation) if fit_decoding or needs_workbench(names, inputs) else None
    if fit_decoding:
        inputs.fit_decoding = _decoding_fit(val_side, split, mirror=decoding.mirror)
    if needs_workbench(names, inputs):
        inputs.search = val_side
        inputs.float_search_mae = float(np.mean(np.abs(predict_keras(models["float"], inputs.search.images)[0]
                                                       - inputs.search.ages)))
    results, settings = run_targets(names, inputs, out, score=age_metrics, toolkit_version=__version__,
                                    threshold=threshold, debug_images=debug_images, budget=budget,
                                    max_float=max_float, int16x8_faces=int16x8_faces,
                                    bias_correction=bias_correction)
    report = {"toolkit_version": __version__, "float_model": str(float_path), "qat_model": str(qat_path or ""),
              "validation": validation.source if validation else "none (no --data)",
              "calibration": calibration.source if calibration else "none (no --data)",
              "threshold_years": threshold, "workbench": settings, "keras": keras_metrics,
              "targets": [r.__dict__ for r in results]}
    write_reports(report, out)
    rejected = [r for r in results if r.status == "rejected"]
    if rejected:
        raise EdgeAgeError("; ".join(f"{r.file} rejected: {r.reason}" for r in rejected))
    return report


def _decoding_fit(faces: Samples, split: Path, *, mirror: bool):
    """What fits a file's age decoding on its own outputs on ``faces`` (the split's validation side)."""
    from functools import partial

    from edge_age.eval.correction import fit_tflite
    from firmware_host.files.paths import file_sha256
    return partial(fit_tflite, images=faces.images, ages=faces.ages, mirror=mirror, split_sha256=file_sha256(split))


def _search_faces(data, split: Path | None, size: int, validation: Samples) -> Samples:
    """The faces the int8-mixed search scores on: the split's validation side, else the validation faces."""
    if split:
        val_rows = read_split(split).side("val")
        if val_rows:
            return _faces(data, val_rows, size, "validation split")
    return validation
