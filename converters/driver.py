"""The conversion driver: every target of the table built in a staging folder, described, validated and moved
into the output folder only when its MAE on the validation faces is within ``threshold`` years of the float Keras
model's, so a broken file never replaces a good one; each file gets its sidecar (``firmware_host.infer.model_info``).
Every integer file also gets its per-layer error and its agreement with the float model (``converters.workbench``).

It takes the Keras models, the faces and the Keras model's own scores as arguments: what data and metrics mean
belongs to ``edge_age`` (``edge_age.conversion`` gathers them), and nothing of ``edge_age`` is imported here.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.bias_correction import BiasCorrection
from converters.sources import Sources
from converters.targets import CORRECTED_TARGETS, DECODING_FIT_TARGETS, INTEGER_TARGETS, TARGETS
from converters.workbench import Workbench
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.paths import file_sha256
from firmware_host.infer.contract import is_age_gender
from firmware_host.infer.model_info import ModelInfo, Output, write_info
from firmware_host.infer.postprocess import AgeDecoding
from firmware_host.infer.predictor import predict_tflite
from firmware_host.infer.preprocess import COLOR_ORDER, PIXEL_OFFSET, PIXEL_SCALE, normalize
from firmware_host.progress import track

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.5
DEFAULT_CALIB = 300
DEFAULT_DEBUG_IMAGES = 100
DEFAULT_BUDGET = 0.1
DEFAULT_MAX_FLOAT = 8
DEFAULT_INT16X8_FACES = 500  # its reference kernels take about 40 ms a face on the reference model
Score = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict]  # (ages, genders, true ages, genders)


@dataclass
class Samples:
    """Images and labels used for calibration, validation or the int8-mixed search."""

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


def check_outputs(model, path: Path) -> None:
    """Refuse a Keras model without an age and a gender output."""
    keys = list(model.output) if isinstance(model.output, dict) else list(model.output_names)
    if not is_age_gender(keys):
        raise EdgeAgeError(f"{path} is not an edge-age model: outputs {keys}, expected age and gender")


def model_info(path: Path, name: str, source: Path, *, toolkit_version: str) -> ModelInfo:
    """The sidecar content of a converted file, read back from the file itself."""
    from firmware_host.infer.interpreter import make_interpreter
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
                     source_model=source.name, source_sha256=file_sha256(source), toolkit_version=toolkit_version)


def spread(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def _subset(faces: Samples, idx: np.ndarray) -> Samples:
    return Samples(faces.images[idx], faces.ages[idx], faces.genders[idx], f"{len(idx)} of {faces.source}")


def mean_abs_age_diff(ages: np.ndarray, reference: np.ndarray) -> float:
    """|Δage| of a converted file: the mean over the validation faces of |its age - the age from the Keras model it
    was converted from| (the float model, or the QAT model for the targets made from it), in years."""
    return float(np.mean(np.abs(np.asarray(ages, float) - np.asarray(reference, float))))


def _validate(path: Path, faces: Samples, reference: tuple[np.ndarray, np.ndarray], score: Score, *,
              decoding: AgeDecoding, progress: str | None = None) -> dict:
    pred_age, pred_gender = predict_tflite(path, faces.images, decoding=decoding, progress=progress)
    m = score(pred_age, faces.ages, pred_gender, faces.genders)
    m["mean_abs_age_diff"] = mean_abs_age_diff(pred_age, reference[0])
    m["gender_agreement"] = float(np.mean((pred_gender >= 0.5) == (reference[1] >= 0.5)))
    return m


def _describe(path: Path, decoding: AgeDecoding) -> dict:
    from firmware_host.infer.graph import activation_types, integer_only, op_counts, read_ops
    from firmware_host.infer.interpreter import coverage, make_interpreter
    from firmware_host.pipeline.latency import measure
    ops = read_ops(path)
    interpreter = make_interpreter(path, threads=1)
    taken = coverage(interpreter)
    times = measure(interpreter, runs=100, invokes=decoding.runs_per_face)
    return {"size_kb": round(path.stat().st_size / 1024, 1), "ops": op_counts(ops), "integer_only": integer_only(ops),
            "activations": activation_types(ops), "xnnpack": taken.to_dict(),
            "latency_ms_p50": float(np.median(times) * 1000)}


def check_options(debug_images: int | None, budget: float, max_float: int, int16x8_faces: int) -> None:
    if debug_images is not None and debug_images < 1:
        raise EdgeAgeError(f"{{}} must be 1 or more, not "
                           f"{debug_images}", option="--debug-images", parameter="debug_images")
    if not budget >= 0:
        raise EdgeAgeError(f"{{}} must be 0 or more years, not {budget}", option="--budget", parameter="budget")
    if max_float < 0:
        raise EdgeAgeError(f"{{}} must be 0 or more, not {max_float}", option="--max-float", parameter="max_float")
    if int16x8_faces < 0:
        raise EdgeAgeError(f"{{}} must be 0 (all) or more, not "
                           f"{int16x8_faces}", option="--int16x8-faces", parameter="int16x8_faces")


def _representative(faces: Samples):
    def representative():
        for img in faces.images:
            yield [normalize(img[None])]
    return representative


@dataclass
class Inputs:
    """What one conversion run converts and checks against: the Keras models (``float``, maybe ``qat``) and their
    files, the faces (None without data), the Keras models' predictions and scores on the validation faces, the
    faces and float MAE of the int8-mixed search, the chip resolution the runtime crops at, the age decoding
    every sidecar carries (``device.json``'s; the files are validated with it), and, for ``convert
    --fit-decoding``, what fits the decoding of a file of ``DECODING_FIT_TARGETS`` on its own outputs instead."""

    models: dict
    paths: dict
    calibration: Samples | None = None
    validation: Samples | None = None
    keras_preds: dict = field(default_factory=dict)
    keras_metrics: dict = field(default_factory=dict)
    search: Samples | None = None
    float_search_mae: float | None = None
    resolution: int | None = None
    age_decoding: dict | None = None
    fit_decoding: Callable[[Path], dict] | None = None


def needs_workbench(names: list[str], inputs: Inputs) -> bool:
    """Whether the run analyses integer files (it has faces and an integer target)."""
    return inputs.validation is not None and inputs.calibration is not None and bool(set(names) & INTEGER_TARGETS)


def _workbench(inputs: Inputs, sources: Sources, staging: Path, settings: dict, debug_images: int | None):
    """The workbench of the run: debug images spread over the validation faces; the int8-mixed search runs on
    ``inputs.search`` (the split's validation side, the test side staying for the report)."""
    validation, search = inputs.validation, inputs.search
    n = min(debug_images or DEFAULT_DEBUG_IMAGES, len(validation.ages))
    bench = Workbench(sources, _representative(inputs.calibration),
                      validation.images[spread(len(validation.ages), n)], staging, search_images=search.images,
                      search_ages=search.ages, float_search_mae=inputs.float_search_mae,
                      budget=settings["budget_years"], max_float=settings["max_float"])
    return bench, {**settings, "debug_images": n, "search_faces": search.source,
                   "float_search_mae": inputs.float_search_mae}


def run_targets(names: list[str], inputs: Inputs, out: Path, *, score: Score, toolkit_version: str,
                threshold: float = DEFAULT_THRESHOLD, debug_images: int | None = None,
                budget: float = DEFAULT_BUDGET, max_float: int = DEFAULT_MAX_FLOAT,
                int16x8_faces: int = DEFAULT_INT16X8_FACES, bias_correction: bool = True) -> tuple[list[Result], dict]:
    """Build, check and promote every target of ``names`` into ``out``: the results and the workbench settings.
    ``bias_correction`` corrects int8's and int16x8's biases for their weights' mean error
    (``converters.bias_correction``)."""
    results: list[Result] = []
    staging = atomic.staging_dir(out)
    settings = {"debug_images": 0, "budget_years": budget, "max_float": max_float, "int16x8_faces": int16x8_faces,
                "bias_correction": bias_correction}
    try:
        bench = None
        sources = Sources(inputs.models, staging)
        if needs_workbench(names, inputs):
            bench, settings = _workbench(inputs, sources, staging, settings, debug_images)
        run = _Run(inputs, sources, threshold, staging, out, bench, int16x8_faces, score, toolkit_version,
                   bias_correction)
        for name in track(names, "converting", total=len(names)):
            results.append(run.one(name, inputs.paths[TARGETS[name].source]))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results, settings


@dataclass
class _Run:
    """What every target of one convert run shares."""

    inputs: Inputs
    sources: Sources
    threshold: float
    staging: Path
    out: Path
    bench: Workbench | None
    int16x8_faces: int
    score: Score
    toolkit_version: str
    bias_correction: bool

    def _options(self, name: str) -> dict:
        """What a target takes beyond its source and calibration: int8-mixed's search, int8's and int16x8's bias
        correction (against the float reference file the workbench makes anyway)."""
        if name == "int8-mixed":
            return {"search": self.bench.search()}
        if name in CORRECTED_TARGETS and self.bias_correction and self.bench is not None:
            return {"bias_correction": BiasCorrection(self.bench.reference("float"))}
        return {}

    def one(self, name: str, source_path: Path) -> Result:
        t = TARGETS[name]
        if t.calibrated and self.inputs.calibration is None:
            return Result(name, "skipped", reason="needs calibration images: pass --data (and --split)")
        if name == "int8-mixed" and self.bench is None:
            return Result(name, "skipped", reason="needs validation faces to search with: pass --data (and --split)")
        file = f"age_gender_{name}.tflite"
        path = self.staging / file
        options = self._options(name)
        path.write_bytes(t.build(self.sources[t.source], calibration=_representative(self.inputs.calibration)
                                 if t.calibrated else None, **options))
        details = {"source": t.source, "device": t.device}
        if name in CORRECTED_TARGETS:
            correction = options.get("bias_correction")
            details["bias_correction"] = correction.to_dict() if correction else {"applied": False}
        try:
            info = model_info(path, name, source_path, toolkit_version=self.toolkit_version)
        except EdgeAgeError as exc:
            return Result(name, "skipped", file, f"LiteRT cannot run it here: {exc.for_cli()}", details)
        info.age_decoding = self.inputs.age_decoding
        if self.inputs.fit_decoding is not None and name in DECODING_FIT_TARGETS:
            info.age_decoding = self.inputs.fit_decoding(path)
            details["age_decoding_fitted_on_file"] = True
        details["age_decoding"] = info.decoding.describe()
        details.update(_describe(path, info.decoding))
        if self.inputs.resolution:  # the runtime crops faces at this resolution first, as the training chips were
            info.extra["chip_resolution"] = self.inputs.resolution
        if "search" in options:
            details.update(_mixed(options["search"], path, self.staging))
        if self.inputs.validation is not None:
            verdict = self._check(name, t.source, path, details, info.decoding)
            if self.bench is not None and name in INTEGER_TARGETS:
                details.update(self.bench.analyse(name, t.source, path, details.get("kept_float_tensors"),
                                                  corrected=details.get("bias_correction", {}).get("applied", False)))
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

    def _check(self, name: str, source: str, path: Path, details: dict, decoding: AgeDecoding) -> str:
        """Validate ``path``, its ages read with ``decoding``, into ``details``; the reason to reject it, or ""."""
        faces, reference = self.inputs.validation, self.inputs.keras_preds[source]
        float_mae = self.inputs.keras_metrics["float"]["mae"]
        progress = None
        if name == "int16x8" and 0 < self.int16x8_faces < len(faces.ages):
            idx = spread(len(faces.ages), self.int16x8_faces)
            faces, reference = _subset(faces, idx), tuple(r[idx] for r in reference)
            float_mae = float(np.mean(np.abs(self.inputs.keras_preds["float"][0][idx] - faces.ages)))
            details["validated_on"] = faces.source
            progress = "validating int16x8"
        v = _validate(path, faces, reference, self.score, decoding=decoding, progress=progress)
        details.update(v)
        details["mae_delta_to_float"] = v["mae"] - float_mae
        if v["mae"] > float_mae + self.threshold:
            return f"MAE {v['mae']:.2f} vs float {float_mae:.2f} (threshold {self.threshold:.2f} years)"
        return ""


def _mixed(search, path: Path, staging: Path) -> dict:
    """The search's outcome, its cost in latency and size against pure int8, and what an Edge TPU would make of it."""
    from converters.edgetpu import check
    from firmware_host.infer.interpreter import make_interpreter
    from firmware_host.pipeline.latency import measure
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
