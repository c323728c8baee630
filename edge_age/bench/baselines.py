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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files.jsonio import check_schema, read_json
from firmware_host.infer.postprocess import softmax

SCHEMA_FILE = Path(__file__).with_name("baseline.schema.json")
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


def read_baseline(path: str | Path) -> Baseline:
    """The baseline described by ``path``: an ``.onnx`` (with its ``.json`` beside it) or the ``.json`` itself,
    checked against ``baseline.schema.json`` (one line naming the field otherwise)."""
    path = Path(path)
    spec = path.with_suffix(".json")
    if not spec.is_file():
        raise EdgeAgeError(f"the ONNX baseline {path} needs its preprocessing in {spec} "
                           "(input_size, color_order, layout, mean/std or scale/offset, age output)")
    raw = read_json(spec, "baseline spec")
    check_schema(raw, SCHEMA_FILE, spec)
    model = path if path.suffix == ".onnx" else spec.parent / str(raw.get("model", ""))
    if model.suffix != ".onnx" or not model.is_file():
        raise EdgeAgeError(f"baseline spec {spec}: model: ONNX model {model} does not exist")
    return Baseline(
        model=model, spec_file=spec, input_size=int(raw["input_size"]), color_order=raw.get("color_order", "RGB"),
        layout=raw.get("layout", "NHWC"), scale=float(raw.get("scale", 1.0)), offset=float(raw.get("offset", 0.0)),
        mean=tuple(float(v) for v in np.broadcast_to(raw.get("mean", 0.0), 3)),
        std=tuple(float(v) for v in np.broadcast_to(raw.get("std", 1.0), 3)),
        age=dict(raw.get("age", {"decode": "value"})), gender=dict(raw["gender"]) if raw.get("gender") else None)


def _check_shapes(baseline: Baseline, sess) -> None:
    """The model's input fits ``input_size`` and ``layout``, and each output read has the ``column`` read."""
    where = baseline.spec_file
    (inp,) = sess.get_inputs()
    s = baseline.input_size
    want = [s, s, 3] if baseline.layout == "NHWC" else [3, s, s]
    dims = list(inp.shape[1:])
    if len(dims) != 3 or any(isinstance(d, int) and d != w for d, w in zip(dims, want)):
        raise EdgeAgeError(f"baseline spec {where}: input_size/layout: {s} px {baseline.layout} means input "
                           f"{['N', *want]}, the model takes {inp.shape}")
    outputs = {o.name: o.shape for o in sess.get_outputs()}
    for key, head in (("age", baseline.age), ("gender", baseline.gender or {})):
        if head.get("output") and head["output"] not in outputs:
            raise EdgeAgeError(f"baseline spec {where}: {key}.output: {head['output']!r} is not one of {list(outputs)}")
        shape = outputs[head["output"]] if head.get("output") else next(iter(outputs.values()))
        width = int(np.prod(shape[1:])) if all(isinstance(d, int) for d in shape[1:]) else None
        if head and width is not None and int(head.get("column", 0)) >= width:
            raise EdgeAgeError(f"baseline spec {where}: {key}.column: {head['column']} is outside the output's "
                               f"{width} columns")


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
    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise EdgeAgeError(f"{baseline.model} takes {[i.type for i in inputs]}; ONNX baselines take one float input")
    _check_shapes(baseline, sess)
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
        age, gender = decode(baseline, sess, sess.run(None, {inp.name: preprocess(baseline,
                                                                                  faces[start:start + batch])}))
        ages.append(age)
        genders.append(gender)
    return np.concatenate(ages), None if baseline.gender is None else np.concatenate(genders)


def measure(baseline: Baseline, threads: int = 1, runs: int = 50, warmup: int = 5, **timing) -> np.ndarray:
    """Seconds per ``session.run`` of one random face (batch 1) after ``warmup`` untimed runs: ``runs`` of
    them, or as ``timing`` says (see ``firmware_host.pipeline.latency.time_calls``)."""
    from firmware_host.pipeline.latency import time_calls
    sess = session(baseline, threads)
    name = sess.get_inputs()[0].name
    face = np.random.default_rng(0).integers(0, 256, (1, baseline.input_size, baseline.input_size, 3), dtype=np.uint8)
    feed = {name: preprocess(baseline, face)}
    for _ in range(warmup):
        sess.run(None, feed)
    return time_calls(lambda: sess.run(None, feed), runs, **timing)
