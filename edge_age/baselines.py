"""ONNX baselines: another tool's age model, run through onnxruntime on the same faces as ours.

A small JSON gives the model's preprocessing and how to read its outputs. It sits beside
``NAME.onnx`` as ``NAME.json``, or is given itself with a ``model`` key (relative to the JSON)::

    {"model": "age.onnx", "input_size": 64, "color_order": "BGR", "layout": "NCHW",
     "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],
     "age": {"output": "age", "decode": "softmax_expectation"},
     "gender": {"output": "gender", "decode": "probability", "positive": "female"}}

Pixels (0..255, in ``color_order``) become ``(x * scale + offset - mean) / std`` (defaults 1, 0, 0, 1).
``age.decode``: ``value`` (years, times ``scale``, from column ``column``), ``softmax_expectation``
(logits over ages ``first_age``, ``first_age + 1``, ...) or ``expectation`` (probabilities over them).
``gender`` is optional; ``decode``: ``probability``, ``logit`` or ``softmax`` (over the columns), read
at ``column``, which holds the ``positive`` class. ``output`` defaults to the model's first output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.postprocess import softmax

AGE_DECODES = ("value", "softmax_expectation", "expectation")
GENDER_DECODES = ("probability", "logit", "softmax")
ACCURACY_BATCH = 64


@dataclass(frozen=True)
class Baseline:
    """An ONNX age model and its preprocessing, read from its JSON."""

    model: Path
    spec_file: Path
    input_size: int
    color_order: str = "RGB"
    layout: str = "NHWC"
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    age: dict = field(default_factory=lambda: {"decode": "value"})
    gender: dict | None = None

    def to_dict(self) -> dict:
        return {"model": str(self.model), "spec": str(self.spec_file), "input_size": self.input_size,
                "color_order": self.color_order, "layout": self.layout, "scale": self.scale, "offset": self.offset,
                "mean": list(self.mean), "std": list(self.std), "age": self.age, "gender": self.gender}


def _choice(spec: Path, key: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise EdgeAgeError(f"baseline spec {spec}: {key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def read_baseline(path: str | Path) -> Baseline:
    """The baseline described by ``path``: an ``.onnx`` (with its ``.json`` beside it) or the ``.json`` itself."""
    path = Path(path)
    spec = path.with_suffix(".json")
    try:
        raw = json.loads(spec.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeAgeError(f"the ONNX baseline {path} needs its preprocessing in {spec} "
                           "(input_size, color_order, layout, mean/std or scale/offset, age output)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeAgeError(f"baseline spec {spec} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict) or "input_size" not in raw:
        raise EdgeAgeError(f"{spec} is not a baseline spec: it needs at least input_size (and model, "
                           "when not beside an .onnx of the same name)")
    known = {"model", "input_size", "color_order", "layout", "scale", "offset", "mean", "std", "age", "gender"}
    if set(raw) - known:
        raise EdgeAgeError(f"baseline spec {spec}: unknown keys {sorted(set(raw) - known)}; known: {sorted(known)}")
    model = path if path.suffix == ".onnx" else spec.parent / str(raw.get("model", ""))
    if model.suffix != ".onnx" or not model.is_file():
        raise EdgeAgeError(f"baseline spec {spec}: ONNX model {model} does not exist")
    try:
        baseline = Baseline(
            model=model, spec_file=spec, input_size=int(raw["input_size"]),
            color_order=_choice(spec, "color_order", raw.get("color_order", "RGB"), ("RGB", "BGR")),
            layout=_choice(spec, "layout", raw.get("layout", "NHWC"), ("NHWC", "NCHW")),
            scale=float(raw.get("scale", 1.0)), offset=float(raw.get("offset", 0.0)),
            mean=tuple(float(v) for v in np.broadcast_to(raw.get("mean", 0.0), 3)),
            std=tuple(float(v) for v in np.broadcast_to(raw.get("std", 1.0), 3)),
            age=dict(raw.get("age", {"decode": "value"})), gender=dict(raw["gender"]) if raw.get("gender") else None)
    except (TypeError, ValueError) as exc:
        raise EdgeAgeError(f"baseline spec {spec} has a bad value: {exc}") from None
    _choice(spec, "age.decode", baseline.age.get("decode"), AGE_DECODES)
    if baseline.gender is not None:
        _choice(spec, "gender.decode", baseline.gender.get("decode"), GENDER_DECODES)
        _choice(spec, "gender.positive", baseline.gender.get("positive", "female"), ("female", "male"))
    if 0.0 in baseline.std:
        raise EdgeAgeError(f"baseline spec {spec}: std must not be 0")
    return baseline


def session(baseline: Baseline, threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads, or a one-line error."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgeAgeError("ONNX baselines need onnxruntime: pip install 'edge-age[baselines]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(baseline.model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors derive from Exception only
        raise EdgeAgeError(f"{baseline.model} is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    (inp,) = sess.get_inputs()
    if inp.type != "tensor(float)":
        raise EdgeAgeError(f"{baseline.model} takes {inp.type}; ONNX baselines must take float input")
    names = [o.name for o in sess.get_outputs()]
    for head in (baseline.age, baseline.gender or {}):
        if head.get("output") and head["output"] not in names:
            raise EdgeAgeError(f"baseline spec {baseline.spec_file}: output {head['output']!r} is not one of {names}")
    return sess


def preprocess(baseline: Baseline, faces: np.ndarray) -> np.ndarray:
    """uint8 RGB faces (N, S, S, 3) as the model's float input."""
    if faces.shape[1:3] != (baseline.input_size, baseline.input_size):
        raise EdgeAgeError(f"{baseline.model} takes {baseline.input_size} px faces, got {faces.shape[1]} px")
    x = faces[..., ::-1] if baseline.color_order == "BGR" else faces
    x = (x.astype(np.float32) * baseline.scale + baseline.offset - np.float32(baseline.mean)) / np.float32(baseline.std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if baseline.layout == "NCHW" else x, dtype=np.float32)


def _output(sess, outputs: list[np.ndarray], head: dict) -> np.ndarray:
    names = [o.name for o in sess.get_outputs()]
    value = np.asarray(outputs[names.index(head["output"])] if head.get("output") else outputs[0], np.float64)
    return value.reshape(len(value), -1)


def decode(baseline: Baseline, sess, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(age in years, probability of female or None) from the session's outputs."""
    age_spec = baseline.age
    age = _output(sess, outputs, age_spec)
    if age_spec["decode"] == "value":
        years = age[:, int(age_spec.get("column", 0))] * float(age_spec.get("scale", 1.0))
    else:
        p = softmax(age) if age_spec["decode"] == "softmax_expectation" else age / age.sum(axis=1, keepdims=True)
        years = p @ (np.arange(age.shape[1]) + float(age_spec.get("first_age", 0)))
    if baseline.gender is None:
        return years, None
    g_spec = baseline.gender
    g = _output(sess, outputs, g_spec)
    column = int(g_spec.get("column", 0))
    p = {"probability": lambda: g[:, column], "logit": lambda: 1.0 / (1.0 + np.exp(-g[:, column])),
         "softmax": lambda: softmax(g)[:, column]}[g_spec["decode"]]()
    return years, p if g_spec.get("positive", "female") == "female" else 1.0 - p


def predict(baseline: Baseline, faces: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """(age, gender probability or None) of uint8 RGB faces."""
    sess = session(baseline, threads)
    inp = sess.get_inputs()[0]
    batch = 1 if inp.shape[0] == 1 else ACCURACY_BATCH
    ages, genders = [], []
    for start in range(0, len(faces), batch):
        age, gender = decode(baseline, sess, sess.run(None, {inp.name: preprocess(baseline, faces[start:start + batch])}))
        ages.append(age)
        genders.append(gender)
    return np.concatenate(ages), None if baseline.gender is None else np.concatenate(genders)


def measure(baseline: Baseline, threads: int = 1, runs: int = 50, warmup: int = 5, **timing) -> np.ndarray:
    """Seconds per ``session.run`` of one random face (batch 1) after ``warmup`` untimed runs: ``runs`` of
    them, or as ``timing`` says (see ``firmware_host.latency.time_calls``)."""
    from firmware_host.latency import time_calls
    sess = session(baseline, threads)
    name = sess.get_inputs()[0].name
    face = np.random.default_rng(0).integers(0, 256, (1, baseline.input_size, baseline.input_size, 3), dtype=np.uint8)
    feed = {name: preprocess(baseline, face)}
    for _ in range(warmup):
        sess.run(None, feed)
    return time_calls(lambda: sess.run(None, feed), runs, **timing)
