"""``edge-age convert``: every TFLite target of a model, calibrated, validated and reported.

Files are built in a staging folder and moved into ``--out`` only when their MAE on
the validation faces is within ``threshold`` years of the float Keras model's, so a
broken file never replaces a good one.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.targets import TARGETS, target
from edge_age import __version__
from edge_age.calibration import DEFAULT_MANIFEST, choose, read_manifest
from edge_age.data.faceset import load_faces, native_size
from edge_age.data.split import Row, read_split
from edge_age.models import reference_model
from edge_age.training import read_device_facts
from edge_age.progress import track
from edge_age.report_page import md_table
from firmware_host import atomic
from firmware_host.errors import EdgeAgeError
from firmware_host.jsonio import write_json
from firmware_host.model_info import ModelInfo, Output, write_info
from firmware_host.preprocess import COLOR_ORDER, PIXEL_OFFSET, PIXEL_SCALE, normalize

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.5
DEFAULT_CALIB = 300


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


def _validate(path: Path, faces: Faces, reference: tuple[np.ndarray, np.ndarray]) -> dict:
    from edge_age.evaluation import predict_tflite
    from edge_age.metrics import age_metrics
    pred_age, pred_gender = predict_tflite(path, faces.images)
    m = age_metrics(pred_age, faces.ages, pred_gender, faces.genders)
    m["age_diff_to_keras"] = float(np.mean(np.abs(pred_age - reference[0])))
    m["gender_agreement"] = float(np.mean((pred_gender >= 0.5) == (reference[1] >= 0.5)))
    return m


def _describe(path: Path) -> dict:
    from firmware_host.graph import integer_only, op_counts, read_ops
    from firmware_host.interpreter import make_interpreter
    from firmware_host.latency import measure
    ops = read_ops(path)
    times = measure(make_interpreter(path, threads=1), runs=100)
    return {"size_kb": round(path.stat().st_size / 1024, 1), "ops": op_counts(ops), "integer_only": integer_only(ops),
            "latency_ms_p50": float(np.median(times) * 1000)}


def convert(model: Path | None = None, targets: list[str] | None = None, out: Path = Path("runs/convert"),
            data=None, split: Path | None = None, calib: int = DEFAULT_CALIB, qat: Path | None = None,
            threshold: float = DEFAULT_THRESHOLD, stratified: bool = True) -> dict:
    """Build, validate and report every target; raise after reporting when a file was rejected."""
    from edge_age.evaluation import predict_keras
    from edge_age.metrics import age_metrics
    from edge_age.training import load_model

    names = list(targets or TARGETS)
    for name in names:
        target(name)
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
    try:
        for name in track(names, "converting", total=len(names)):
            results.append(_one(name, models, float_path if TARGETS[name].source == "float" else qat_path,
                                calibration, validation, keras_preds, keras_metrics, threshold, staging, out,
                                resolution))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = {"toolkit_version": __version__, "float_model": str(float_path), "qat_model": str(qat_path or ""),
              "validation": validation.source if validation else "none (no --data)",
              "calibration": calibration.source if calibration else "none (no --data)",
              "threshold_years": threshold, "keras": keras_metrics,
              "targets": [r.__dict__ for r in results]}
    write_reports(report, out)
    rejected = [r for r in results if r.status == "rejected"]
    if rejected:
        raise EdgeAgeError("; ".join(f"{r.file} rejected: {r.reason}" for r in rejected))
    return report


def _one(name, models, source_path, calibration, validation, keras_preds, keras_metrics, threshold,
         staging: Path, out: Path, resolution: int | None) -> Result:
    t = TARGETS[name]
    if t.calibrated and calibration is None:
        return Result(name, "skipped", reason="needs calibration images: pass --data (and --split)")

    def representative():
        for img in calibration.images:
            yield [normalize(img[None])]

    file = f"age_gender_{name}.tflite"
    path = staging / file
    path.write_bytes(t.build(models[t.source], calibration=representative if t.calibrated else None))
    info = model_info(path, name, source_path)
    if resolution:  # the runtime crops faces at this resolution first, as the training chips were
        info.extra["chip_resolution"] = resolution
    details = {"source": t.source, "device": t.device, **_describe(path)}
    if validation is not None:
        v = _validate(path, validation, keras_preds[t.source])
        details.update(v)
        float_mae = keras_metrics["float"]["mae"]
        details["mae_delta_to_float"] = v["mae"] - float_mae
        if v["mae"] > float_mae + threshold:
            return Result(name, "rejected", file, f"MAE {v['mae']:.2f} vs float {float_mae:.2f} "
                                                  f"(threshold {threshold:.2f} years)", details)
    write_info(path, info)
    for produced in staging.iterdir():
        if produced.name.startswith(path.stem):
            produced.replace(out / produced.name)
    if name == "edgetpu":
        details.update(_edgetpu(out / file, out))
    return Result(name, "ok", file, details=details)


def _edgetpu(path: Path, out: Path) -> dict:
    """Compatibility with the Edge TPU, and the compiler's run (or the command to run elsewhere)."""
    from converters.edgetpu import check, compile_edgetpu
    compat = check(path)
    compiled = compile_edgetpu(path, out)
    return {"edgetpu": compat.to_dict(), "edgetpu_markdown": compat.to_markdown(),
            "edgetpu_compiler": {k: str(v) if isinstance(v, Path) else v for k, v in compiled.__dict__.items()}}


def _row(r: Result) -> list:
    d = r.details
    fmt = lambda k, f: (f.format(d[k]) if k in d else "-")  # noqa: E731
    return [r.target, r.status, fmt("size_kb", "{:.0f}"), "yes" if d.get("integer_only") else "no" if d else "-",
            fmt("mae", "{:.2f}"), fmt("mae_delta_to_float", "{:+.2f}"), fmt("cs5", "{:.1%}"),
            fmt("gender_accuracy", "{:.1%}"), fmt("age_diff_to_keras", "{:.3f}"), fmt("gender_agreement", "{:.1%}"),
            fmt("latency_ms_p50", "{:.2f}"), r.reason or ""]


HEADER = ["target", "status", "KB", "int only", "MAE", "ΔMAE", "CS@5", "gender", "|Δage| to Keras",
          "gender agree", "p50 ms (1 thread)", "note"]


def table(report: dict) -> str:
    return md_table(HEADER, [_row(Result(**r)) for r in report["targets"]])


def write_reports(report: dict, out: Path) -> None:
    """convert_report.json and convert_report.md, replacing the previous ones as one set."""
    with atomic.file_set(out) as staging:
        _write_report_files(report, staging)


def _write_report_files(report: dict, out: Path) -> None:
    write_json(out / "convert_report.json", report)
    keras_rows = [[k, m["n"], f"{m['mae']:.2f}", f"{m['cs5']:.1%}", f"{m.get('gender_accuracy', float('nan')):.1%}"]
                  for k, m in report["keras"].items()]
    md = ["# Conversion report\n", f"Validation: {report['validation']}; calibration: {report['calibration']}; "
          f"rejection threshold: MAE more than {report['threshold_years']} years above the float model.\n",
          "## Keras models\n", md_table(["model", "n", "MAE", "CS@5", "gender"], keras_rows) if keras_rows else "none\n",
          "## TFLite files\n", table(report)]
    for r in report["targets"]:
        if "edgetpu" in r["details"]:
            compiler = r["details"]["edgetpu_compiler"]
            ran = (f"compiled: `{compiler['model']}`, log `{compiler['log']}`" if compiler["compiled"]
                   else f"`edgetpu_compiler` is not on PATH here; on a machine that has it run:\n\n    {compiler['command']}")
            md += ["## Edge TPU compatibility\n", r["details"]["edgetpu_markdown"], ran + "\n"]
    atomic.write_text(out / "convert_report.md", "\n".join(md))
