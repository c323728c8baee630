"""``edge-age convert``: every TFLite target of a model, calibrated, validated and reported.

Files are built in a staging folder and moved into ``--out`` only when their MAE on
the validation faces is within ``threshold`` years of the float Keras model's, so a
broken file never replaces a good one. Every integer file also gets its per-layer
error and its agreement with the float model (``converters.workbench``).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from converters.targets import DEFAULT_TARGETS, INTEGER_TARGETS, TARGETS, target
from edge_age import __version__
from edge_age.data.calibration import DEFAULT_MANIFEST, choose, read_manifest
from edge_age.data.faceset import load_faces, native_size
from edge_age.data.split import Row, read_split
from edge_age.train.models import reference_model
from edge_age.train.loop import read_device_facts
from firmware_host.progress import track
from firmware_host import atomic
from firmware_host.errors import EdgeAgeError
from firmware_host.model_info import ModelInfo, Output, write_info
from firmware_host.preprocess import COLOR_ORDER, PIXEL_OFFSET, PIXEL_SCALE, normalize

if TYPE_CHECKING:
    from converters.workbench import Workbench

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.5
DEFAULT_CALIB = 300
DEFAULT_DEBUG_IMAGES = 100
DEFAULT_BUDGET = 0.1
DEFAULT_MAX_FLOAT = 8
DEFAULT_INT16X8_FACES = 500  # its reference kernels take about 40 ms a face on the reference model


@dataclass
class Faces:
    """Images and labels used for calibration or validation."""

    images: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    source: str


@dataclass
class Result:
    """One target's outcome: a row of the report."""

    target: str
    status: str  # "ok", "skipped", "rejected"
    file: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve_models(model: Path | None, qat: Path | None) -> tuple[Path, Path | None]:
    """The float model and its QAT twin: the bundled reference, or MODEL and ``--qat`` (default: ``qat.h5`` beside it)."""
    if model is None:
        return reference_model("float"), qat or reference_model("qat")
    twin = qat or (model.parent / "qat.h5")
    return model, twin if twin.is_file() else None


def _faces(data, rows: list[Row], size: int, source: str) -> Faces:
    faces = load_faces(data, size=size)
    index = faces.index()
    found = [r for r in rows if r.file in index]
    if not found:
        raise EdgeAgeError(f"none of the {len(rows)} {source} images is in {faces.root}")
    idx = np.array([index[r.file] for r in found])
    return Faces(np.asarray(faces.images[idx]), np.array([r.age for r in found]),
                 np.array([r.gender for r in found]), f"{source} ({len(found)} images)")


def calibration_rows(split: Path | None, n: int, stratified: bool = True, seed: int = 0) -> list[Row]:
    """``n`` training images from the split (stratified or not), else the first ``n`` of the committed manifest."""
    if split:
        return choose(read_split(split), n, seed=seed, stratified=stratified)
    if not stratified:
        raise EdgeAgeError("a random calibration draw needs --split (the committed manifest is stratified)")
    return read_manifest(DEFAULT_MANIFEST)[:n]


def _check_outputs(model, path: Path) -> None:
    keys = list(model.output) if isinstance(model.output, dict) else list(model.output_names)
    if not any(k.endswith("age") for k in keys) or not any(k.endswith("gender") for k in keys):
        raise EdgeAgeError(f"{path} is not an edge-age model: outputs {keys}, expected age and gender")


def model_info(path: Path, name: str, source: Path) -> ModelInfo:
    """The sidecar content of a converted file, read back from the file itself."""
    from firmware_host.interpreter import make_interpreter
    interpreter = make_interpreter(path)
    runner = interpreter.get_signature_runner()
    (_, inp), = runner.get_input_details().items()
    outputs = {}
    for key, detail in runner.get_output_details().items():
        shape = [int(d) for d in detail["shape"]]
        if key.endswith("age"):
            outputs["age"] = (Output(key, shape, "softmax_expectation", ages=[0, shape[-1] - 1]) if shape[-1] > 1
                              else Output(key, shape, "value"))
        elif key.endswith("gender"):
            outputs["gender"] = Output(key, shape, "sigmoid_probability", positive="female")
    scale, zero = inp["quantization"]
    return ModelInfo(target=name, input_size=int(inp["shape"][1]), color_order=COLOR_ORDER, pixel_scale=PIXEL_SCALE,
                     pixel_offset=PIXEL_OFFSET, input_dtype=np.dtype(inp["dtype"]).name,
                     input_quantization=[float(scale), int(zero)] if scale else None, outputs=outputs,
                     source_model=source.name, source_sha256=sha256(source), toolkit_version=__version__)


def spread(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def _subset(faces: Faces, idx: np.ndarray) -> Faces:
    return Faces(faces.images[idx], faces.ages[idx], faces.genders[idx], f"{len(idx)} of {faces.source}")


def _validate(path: Path, faces: Faces, reference: tuple[np.ndarray, np.ndarray], progress: str | None = None) -> dict:
    from edge_age.eval.evaluation import predict_tflite
    from edge_age.eval.metrics import age_metrics
    pred_age, pred_gender = predict_tflite(path, faces.images, progress=progress)
    m = age_metrics(pred_age, faces.ages, pred_gender, faces.genders)
    m["age_diff_to_keras"] = float(np.mean(np.abs(pred_age - reference[0])))
    m["gender_agreement"] = float(np.mean((pred_gender >= 0.5) == (reference[1] >= 0.5)))
    return m


def _describe(path: Path) -> dict:
    from firmware_host.graph import activation_types, integer_only, op_counts, read_ops
    from firmware_host.interpreter import coverage, make_interpreter
    from firmware_host.latency import measure
    ops = read_ops(path)
    interpreter = make_interpreter(path, threads=1)
    taken = coverage(interpreter)
    times = measure(interpreter, runs=100)
    return {"size_kb": round(path.stat().st_size / 1024, 1), "ops": op_counts(ops), "integer_only": integer_only(ops),
            "activations": activation_types(ops), "xnnpack": taken.to_dict(),
            "latency_ms_p50": float(np.median(times) * 1000)}


def convert(model: Path | None = None, targets: list[str] | None = None, out: Path = Path("runs/convert"),
            data=None, split: Path | None = None, calib: int = DEFAULT_CALIB, qat: Path | None = None,
            threshold: float = DEFAULT_THRESHOLD, stratified: bool = True, *, debug_images: int | None = None,
            budget: float = DEFAULT_BUDGET, max_float: int = DEFAULT_MAX_FLOAT,
            int16x8_faces: int = DEFAULT_INT16X8_FACES) -> dict:
    """Build, validate and report every target; raise after reporting when a file was rejected.

    ``debug_images`` validation faces (default 100, or all when fewer) serve the per-layer analysis; ``budget``,
    ``max_float`` steer the int8-mixed search; int16x8 is validated on ``int16x8_faces`` faces (0: all).
    """
    from edge_age.report.convert_page import write_reports
    from edge_age.eval.evaluation import predict_keras
    from edge_age.eval.metrics import age_metrics
    from edge_age.train.loop import load_model

    names = list(targets or DEFAULT_TARGETS)
    for name in names:
        target(name)
    _check_options(debug_images, budget, max_float, int16x8_faces)
    out = atomic.writable_dir(out)
    float_path, qat_path = resolve_models(model, qat)
    models = {"float": load_model(float_path)}
    _check_outputs(models["float"], float_path)
    needs_qat = [n for n in names if TARGETS[n].source == "qat"]
    if needs_qat and qat_path is None:
        raise EdgeAgeError(f"targets {', '.join(needs_qat)} need the QAT twin of {float_path}: pass --qat "
                           f"or put qat.h5 beside it")
    if needs_qat:
        models["qat"] = load_model(qat_path)
        _check_outputs(models["qat"], qat_path)
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
        raise EdgeAgeError(f"--debug-images {debug_images} is more than the {len(validation.ages)} validation faces")
    keras_preds, keras_metrics = {}, {}
    if validation is not None:
        for kind, m in models.items():
            keras_preds[kind] = predict_keras(m, validation.images)
            pred_age, pred_gender = keras_preds[kind]
            keras_metrics[kind] = age_metrics(pred_age, validation.ages, pred_gender, validation.genders)

    resolution = read_device_facts(float_path).get("chip_resolution") or (native_size(data) if data else None)
    if resolution is None:
        log.warning("no chip resolution known for %s (no device.json beside it, no --data): the runtime will crop "
                    "faces at the model's input size", float_path)
    results: list[Result] = []
    staging = atomic.staging_dir(out)
    settings = {"debug_images": 0, "budget_years": budget, "max_float": max_float, "int16x8_faces": int16x8_faces}
    try:
        bench = None
        if validation is not None and calibration is not None and set(names) & INTEGER_TARGETS:
            bench, settings = _workbench(models, calibration, validation, data, split, size, staging, settings,
                                         debug_images)
        run = _Run(models, calibration, validation, keras_preds, keras_metrics, threshold, staging, out, resolution,
                   bench, int16x8_faces)
        for name in track(names, "converting", total=len(names)):
            results.append(run.one(name, float_path if TARGETS[name].source == "float" else qat_path))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def _check_options(debug_images: int | None, budget: float, max_float: int, int16x8_faces: int) -> None:
    if debug_images is not None and debug_images < 1:
        raise EdgeAgeError(f"{{}} must be 1 or more, not {debug_images}", option="--debug-images", parameter="debug_images")
    if not budget >= 0:
        raise EdgeAgeError(f"{{}} must be 0 or more years, not {budget}", option="--budget", parameter="budget")
    if max_float < 0:
        raise EdgeAgeError(f"{{}} must be 0 or more, not {max_float}", option="--max-float", parameter="max_float")
    if int16x8_faces < 0:
        raise EdgeAgeError(f"{{}} must be 0 (all) or more, not {int16x8_faces}", option="--int16x8-faces", parameter="int16x8_faces")


def _representative(faces: Faces):
    def representative():
        for img in faces.images:
            yield [normalize(img[None])]
    return representative


def _workbench(models, calibration: Faces, validation: Faces, data, split, size: int, staging: Path, settings: dict,
               debug_images: int | None):
    """The workbench of the run: debug images spread over the validation faces; the int8-mixed search runs on the
    split's validation side (the test side stays for the report), or on the validation faces without a split."""
    from edge_age.eval.evaluation import predict_keras
    from converters.workbench import Workbench
    n = min(debug_images or DEFAULT_DEBUG_IMAGES, len(validation.ages))
    search = validation
    if split:
        val_rows = read_split(split).side("val")
        if val_rows:
            search = _faces(data, val_rows, size, "validation split")
    float_mae = float(np.mean(np.abs(predict_keras(models["float"], search.images)[0] - search.ages)))
    bench = Workbench(models, _representative(calibration), validation.images[spread(len(validation.ages), n)],
                      staging, search_images=search.images, search_ages=search.ages, float_search_mae=float_mae,
                      budget=settings["budget_years"], max_float=settings["max_float"])
    return bench, {**settings, "debug_images": n, "search_faces": search.source, "float_search_mae": float_mae}


@dataclass
class _Run:
    """What every target of one convert run shares."""

    models: dict
    calibration: Faces | None
    validation: Faces | None
    keras_preds: dict
    keras_metrics: dict
    threshold: float
    staging: Path
    out: Path
    resolution: int | None
    bench: Workbench | None
    int16x8_faces: int

    def one(self, name: str, source_path: Path) -> Result:
        t = TARGETS[name]
        if t.calibrated and self.calibration is None:
            return Result(name, "skipped", reason="needs calibration images: pass --data (and --split)")
        if name == "int8-mixed" and self.bench is None:
            return Result(name, "skipped", reason="needs validation faces to search with: pass --data (and --split)")
        file = f"age_gender_{name}.tflite"
        path = self.staging / file
        options = {"search": self.bench.search()} if name == "int8-mixed" else {}
        path.write_bytes(t.build(self.models[t.source], calibration=_representative(self.calibration)
                                 if t.calibrated else None, **options))
        details = {"source": t.source, "device": t.device}
        try:
            info = model_info(path, name, source_path)
            details.update(_describe(path))
        except EdgeAgeError as exc:
            return Result(name, "skipped", file, f"LiteRT cannot run it here: {exc}", details)
        if self.resolution:  # the runtime crops faces at this resolution first, as the training chips were
            info.extra["chip_resolution"] = self.resolution
        if options:
            details.update(_mixed(options["search"], path, self.staging))
        if self.validation is not None:
            verdict = self._check(name, t.source, path, details)
            if self.bench is not None and name in INTEGER_TARGETS:
                details.update(self.bench.analyse(name, t.source, path, details.get("kept_float_tensors")))
            if verdict:
                return Result(name, "rejected", file, verdict, details)
        write_info(path, info)
        for produced in list(self.staging.iterdir()):
            if produced.stem == path.stem:
                produced.replace(self.out / produced.name)
        if name == "edgetpu":
            details.update(_edgetpu(self.out / file, self.out))
        note = _over_budget(details) or (f"validated on {details['validated_on']}" if "validated_on" in details else "")
        return Result(name, "ok", file, reason=note, details=details)

    def _check(self, name: str, source: str, path: Path, details: dict) -> str:
        """Validate ``path`` into ``details``; the reason to reject it, or ""."""
        faces, reference, float_mae = self.validation, self.keras_preds[source], self.keras_metrics["float"]["mae"]
        progress = None
        if name == "int16x8" and 0 < self.int16x8_faces < len(faces.ages):
            idx = spread(len(faces.ages), self.int16x8_faces)
            faces, reference = _subset(faces, idx), tuple(r[idx] for r in reference)
            float_mae = float(np.mean(np.abs(self.keras_preds["float"][0][idx] - faces.ages)))
            details["validated_on"] = faces.source
            progress = "validating int16x8"
        v = _validate(path, faces, reference, progress)
        details.update(v)
        details["mae_delta_to_float"] = v["mae"] - float_mae
        if v["mae"] > float_mae + self.threshold:
            return f"MAE {v['mae']:.2f} vs float {float_mae:.2f} (threshold {self.threshold:.2f} years)"
        return ""


def _mixed(search, path: Path, staging: Path) -> dict:
    """The search's outcome, its cost in latency and size against pure int8, and what an Edge TPU would make of it."""
    from converters.edgetpu import check
    from firmware_host.interpreter import make_interpreter
    from firmware_host.latency import measure
    base = staging / "int8_base.tflite"
    base.write_bytes(search.debugger.base)
    p50 = {file: float(np.median(measure(make_interpreter(file, threads=1), runs=100)) * 1000) for file in (base, path)}
    compat = check(path)
    return {**search.outcome.to_dict(),
            "vs_int8": {"int8_latency_ms_p50": p50[base], "latency_ratio": p50[path] / p50[base],
                        "int8_size_kb": round(base.stat().st_size / 1024, 1),
                        "size_ratio": path.stat().st_size / base.stat().st_size},
            "edgetpu": compat.to_dict(), "edgetpu_markdown": compat.to_markdown()}


def _over_budget(details: dict) -> str:
    """The one line that says a mixed file missed its budget, or ""."""
    if details.get("within_budget", True):
        return ""
    return (f"over budget: MAE {details['search_mae']:.3f} on the search faces, float + budget "
            f"{details['search_target_mae']:.3f}, with {len(details['kept_float'])} layers in float")


def _edgetpu(path: Path, out: Path) -> dict:
    """Compatibility with the Edge TPU, and the compiler's run (or the command to run elsewhere)."""
    from converters.edgetpu import check, compile_edgetpu
    compat = check(path)
    compiled = compile_edgetpu(path, out)
    return {"edgetpu": compat.to_dict(), "edgetpu_markdown": compat.to_markdown(),
            "edgetpu_compiler": {k: str(v) if isinstance(v, Path) else v for k, v in compiled.__dict__.items()}}
