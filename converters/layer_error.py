"""Where the quantization error of a file comes from: each op's output against the float model's, layer by layer.

Two methods, and each target's report says which one it used:

- ``debugger`` (``int8``, ``int8-mixed``): TensorFlow's ``QuantizationDebugger`` instruments the calibrated int8
  model (``NumericVerify`` ops) so that every quantized op runs beside its float twin on the same (dequantized)
  inputs, and builds the selectively quantized files. The numbers are the error that op adds by itself; layers
  are ranked by their score (below), lowest first. The statistics are gathered here from the instrumented model's
  tensors rather than by ``QuantizationDebugger.run``, which averages one number per image and so cannot give a
  channel's SNR over all images.
- ``interpreter`` (``int8-qat``, ``edgetpu``, ``int16x8``: QAT files and the 16x8 mode are beyond the debugger,
  which only builds int8 PTQ models): the quantized file and its float reference run in LiteRT with every
  intermediate tensor kept, and each op's output is compared with the same op's output in the reference. The
  numbers are the error accumulated up to that op. Layers are ranked by the SNR of the error each one adds
  (``added_snr_db``: its output's relative error power less its worst input's), lowest first. Ops are paired by
  position among the compute ops (QUANTIZE and DEQUANTIZE left
  out) and checked by type and shape: both files come from one Keras graph, and graph outputs lose their layer
  names in conversion, so names alone cannot pair them.

Measures, over every element of the N images: RMSE relative to the output's range (the range the file quantizes
it to: scale times 255 for 8 bits, 65535 for 16), SNR in dB (float energy over error energy, capped at 150 dB for
an exact output) and cosine similarity. A tensor's SNR is dominated by its largest channels, so it misses an
outlier channel that stretched the range and crushed the others to a few levels (which the next layer still
needs): ``channel_snr_db`` is the median over output channels (last axis) of each channel's SNR, and a layer's
score is the lower of the two.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from converters.targets import ptq_converter
from converters.tf_setup import keras, tensorflow
from firmware_host.errors import EdgeAgeError
from firmware_host.progress import track
from firmware_host.quiet import native_quiet

DEBUGGER, INTERPRETER = "debugger", "interpreter"
MAX_SNR_DB = 150.0
IO_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "DELEGATE"})  # conversions between types, not layers


@dataclass
class Layer:
    """One op's output compared with the float model's."""

    index: int       # position among the compute ops, in graph order
    name: str        # short name: the Keras layer path, or the output's name for a graph output
    tensor: str      # the output tensor's full name (what ``denylisted_nodes`` takes)
    op: str
    rmse: float      # RMSE relative to the output's quantized range
    snr_db: float
    channel_snr_db: float
    cosine: float
    added_snr_db: float | None = None  # interpreter method: SNR of the error this op adds to its inputs'

    rank: int = 0    # 1 = the worst

    @property
    def score(self) -> float:
        return min(self.snr_db, self.channel_snr_db)

    def to_dict(self) -> dict:
        return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in asdict(self).items()}


class _Sums:
    """Running sums of one output over images, per output channel: enough for RMSE, SNR and cosine."""

    def __init__(self):
        self.err2 = self.f2 = 0.0  # per channel, once the first output is seen
        self.q2 = self.fq = self.count = 0.0
        self.low, self.high = np.inf, -np.inf

    def add(self, f: np.ndarray, q: np.ndarray) -> None:
        f, q = f.astype(np.float64), q.astype(np.float64)
        channels = f.shape[-1] if f.ndim else 1
        self.err2 = self.err2 + np.square(f - q).reshape(-1, channels).sum(axis=0)
        self.f2 = self.f2 + np.square(f).reshape(-1, channels).sum(axis=0)
        self.q2 += float(np.sum(q * q))
        self.fq += float(np.sum(f * q))
        self.count += f.size
        self.low, self.high = min(self.low, float(f.min())), max(self.high, float(f.max()))

    def measures(self, value_range: float | None = None) -> dict:
        """rmse (relative to ``value_range``, else the float output's), snr_db, channel_snr_db, cosine."""
        err2, f2 = float(np.sum(self.err2)), float(np.sum(self.f2))
        live = np.flatnonzero(np.atleast_1d(self.f2) > 0)
        channel = (float(np.median([snr_db(a, b) for a, b in zip(np.atleast_1d(self.f2)[live],
                                                                 np.atleast_1d(self.err2)[live])]))
                   if live.size else MAX_SNR_DB)
        value_range = value_range or self.high - self.low
        norm = math.sqrt(f2 * self.q2)
        return {"rmse": math.sqrt(err2 / self.count) / value_range if value_range > 0 and self.count else 0.0,
                "snr_db": snr_db(f2, err2), "channel_snr_db": channel,
                "cosine": self.fq / norm if norm > 0 else float(f2 == self.q2)}

    def score(self) -> float:
        m = self.measures()
        return min(m["snr_db"], m["channel_snr_db"])


def added_snr_db(before: float, after: float) -> float:
    """The SNR of the error added between an SNR of ``before`` and one of ``after`` dB (error powers subtract)."""
    return snr_db(1.0, max(10 ** (-after / 10) - 10 ** (-before / 10), 0.0))


def snr_db(signal: float, error: float) -> float:
    """10 log10(signal / error), capped at MAX_SNR_DB when the error vanishes."""
    if error <= signal * 10 ** (-MAX_SNR_DB / 10):
        return MAX_SNR_DB
    return 10 * math.log10(signal / error) if signal > 0 else -MAX_SNR_DB


def _levels(dtype) -> int:
    info = np.iinfo(np.dtype(dtype))
    return int(info.max) - int(info.min)


def short_name(tensor: str, outputs: dict[str, str] | None = None) -> str:
    """``model/block_3_expand_relu/Relu6;...`` -> ``block_3_expand_relu/Relu6``; a graph output by its signature key."""
    if outputs and tensor in outputs:
        return outputs[tensor]
    first = tensor.split(";")[0]
    path = first.split("/", 1)[1] if "/" in first else first
    return re.sub(r"(^|/)quant_", r"\1", path)


def rank(layers: list[Layer]) -> list[Layer]:
    """Set each layer's rank: by the SNR of the error it adds (interpreter) or by its score (debugger), the worst
    first."""
    key = ((lambda l: l.added_snr_db) if layers and layers[0].added_snr_db is not None else (lambda l: l.score))
    for position, layer in enumerate(sorted(layers, key=key), 1):
        layer.rank = position
    return layers


def worst(layers: list[Layer], n: int = 10) -> list[Layer]:
    return sorted(layers, key=lambda l: l.rank)[:n]


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return (value.astype(np.float64) - zero) * scale if scale else value.astype(np.float64)


def _signature_outputs(interpreter) -> dict[str, str]:
    """Output tensor name -> its signature key with any ``quant_`` prefix removed (``age``, ``gender``)."""
    details = interpreter.get_signature_runner().get_output_details()
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    return {names[d["index"]]: key.removeprefix("quant_") for key, d in details.items()}


def _compute_ops(interpreter) -> list[dict]:
    return [op for op in interpreter._get_ops_details() if op["op_name"] not in IO_OPS]


def _sources(interpreter) -> dict[int, int]:
    """Tensor index -> the tensor it is a (re)quantized copy of, through QUANTIZE and DEQUANTIZE ops."""
    copies = {int(op["outputs"][0]): int(op["inputs"][0]) for op in interpreter._get_ops_details()
              if op["op_name"] in ("QUANTIZE", "DEQUANTIZE")}
    resolved = {}
    for tensor in copies:
        source = tensor
        while source in copies:
            source = copies[source]
        resolved[tensor] = source
    return resolved


def compare_files(quantized: Path, reference: Path, images: np.ndarray, *, description: str) -> list[Layer]:
    """The interpreter method: every compute op of ``quantized`` against the same op of the float ``reference``."""
    from firmware_host.infer.interpreter import make_interpreter
    q_it, r_it = make_interpreter(quantized, keep_tensors=True), make_interpreter(reference, keep_tensors=True)
    q_ops, r_ops = _compute_ops(q_it), _compute_ops(r_it)
    q_detail, r_detail = _details(q_it), _details(r_it)
    shape = lambda detail, op: tuple(detail[int(op["outputs"][0])]["shape"][1:])  # noqa: E731
    if [o["op_name"] for o in q_ops] != [o["op_name"] for o in r_ops] or any(
            shape(q_detail, q) != shape(r_detail, r) for q, r in zip(q_ops, r_ops)):
        raise EdgeAgeError(f"{quantized.name} and {reference.name} do not have the same layers: cannot compare them")
    q_in, r_in = q_it.get_input_details()[0]["index"], r_it.get_input_details()[0]["index"]
    pairs = [(int(q["outputs"][0]), int(r["outputs"][0])) for q, r in zip(q_ops, r_ops)] + [(q_in, r_in)]
    sums = _run(q_it, pairs, images, description, r_it)
    inputs, sums = sums[-1], sums[:-1]
    constants, sources = _constants(q_it), _sources(q_it)
    producer = {int(op["outputs"][0]): i for i, op in enumerate(q_ops)}
    outputs = _signature_outputs(q_it)
    layers = []
    for i, op in enumerate(q_ops):
        out = q_detail[int(op["outputs"][0])]
        feeds = {producer.get(sources.get(t, t), -1) for t in (int(t) for t in op["inputs"] if t >= 0)
                 if t not in constants}
        input_score = min(sums[f].score() if f >= 0 else inputs.score() for f in feeds) if feeds else MAX_SNR_DB
        m = sums[i].measures(_quantized_range(out))
        layer = Layer(i, short_name(out["name"], outputs), out["name"], op["op_name"], **m)
        layer.added_snr_db = added_snr_db(input_score, layer.score)
        layers.append(layer)
    return rank(layers)


def _run(interpreter, pairs: list[tuple[int, int]], images: np.ndarray, description: str,
         reference=None) -> list[_Sums]:
    """Sums of each (quantized tensor, float tensor) pair over ``images``; the float tensors are read from
    ``reference`` when given (run on the same image), else from the same interpreter."""
    from firmware_host.infer.interpreter import invoke
    detail = _details(interpreter)
    sums = [_Sums() for _ in pairs]
    for image in track(images, description, total=len(images)):
        invoke(interpreter, image[None])
        if reference is not None:
            invoke(reference, image[None])
        floats = reference if reference is not None else interpreter
        for (q, f), s in zip(pairs, sums):
            s.add(floats.get_tensor(f), _dequantize(interpreter.get_tensor(q), detail[q]))
    return sums


def _details(interpreter) -> dict[int, dict]:
    return {d["index"]: d for d in interpreter.get_tensor_details()}


def _quantized_range(detail: dict) -> float | None:
    """The range a quantized tensor can hold (scale times its levels), or None for a float tensor."""
    scale = detail["quantization"][0]
    return scale * _levels(detail["dtype"]) if scale else None


def _constants(interpreter) -> set[int]:
    """Tensors that no op computes and the graph is not fed: weights, biases, shapes."""
    produced = {int(t) for op in interpreter._get_ops_details() for t in op["outputs"]}
    fed = {d["index"] for d in interpreter.get_input_details()}
    return {d["index"] for d in interpreter.get_tensor_details()} - produced - fed


class Int8Debugger:
    """The ``int8`` PTQ recipe (same converter, same calibration) under ``tf.lite.experimental.QuantizationDebugger``.

    ``layers(denylist)`` measures each quantized op on ``images``; ``quantized(denylist)`` is the file with the
    ops that write the ``denylist`` tensors kept in float (int8 input and output, like ``int8``).
    """

    def __init__(self, source: Path, calibration, images: np.ndarray):
        self.images = images
        tf = tensorflow()
        with native_quiet():  # the quantizer's "fully_quantize: ..." lines and the tf.lite.Interpreter notice
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=ptq_converter(source, calibration), debug_options=self._options(()))
            self.base = self._debugger.get_nondebug_quantized_model()
        self._denylist: tuple[str, ...] = ()
        self._cache: dict[tuple[str, ...], list[Layer]] = {}
        self.readers = readers(model_interpreter(self.base))

    @staticmethod
    def _options(denylist):
        return tensorflow().lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist) or None,
                                                                       fully_quantize=True)

    def _deny(self, denylist: tuple[str, ...]) -> None:
        if denylist != self._denylist:
            with native_quiet():  # setting the options quantizes again
                self._debugger.options = self._options(denylist)
            self._denylist = denylist

    def quantized(self, denylist=()) -> bytes:
        """The selectively quantized file: the ops writing ``denylist`` tensors in float, every other op int8."""
        denylist = tuple(sorted(denylist))
        if not denylist:
            return self.base
        self._deny(denylist)
        with native_quiet():
            return self._debugger.get_nondebug_quantized_model()

    def layers(self, denylist=(), description: str = "per-layer error") -> list[Layer]:
        """Each quantized op's error on the debug images, in graph order and ranked."""
        key = tuple(sorted(denylist))
        if key not in self._cache:
            self._cache[key] = self._measure(key, description)
        return self._cache[key]

    def _measure(self, denylist: tuple[str, ...], description: str) -> list[Layer]:
        plain = model_interpreter(self.quantized(denylist))
        self._deny(denylist)
        with native_quiet():
            debug = model_interpreter(self._debugger.get_debug_quantized_model(), keep_tensors=True)
        verified = [op for op in debug._get_ops_details() if op["op_name"] == "NumericVerify"]
        producer = {int(op["outputs"][0]): op["op_name"] for op in debug._get_ops_details()}
        names, outputs, detail = _names(plain), _signature_outputs(plain), _details(plain)
        quantized_ops = [(i, op) for i, op in enumerate(_compute_ops(plain))
                         if np.dtype(detail[int(op["outputs"][0])]["dtype"]).kind in "iu"]
        if [producer[int(v["inputs"][0])] for v in verified] != [op["op_name"] for _, op in quantized_ops]:
            raise EdgeAgeError("the debugger's instrumented model does not match its quantized file")
        sums = _run(debug, [(int(v["inputs"][0]), int(v["inputs"][1])) for v in verified], self.images, description)
        layers = []
        for (i, op), s in zip(quantized_ops, sums):
            out = detail[int(op["outputs"][0])]
            name = names[int(op["outputs"][0])]
            layers.append(Layer(i, short_name(name, outputs), name, op["op_name"], **s.measures(_quantized_range(out))))
        return rank(layers)


def model_interpreter(model: bytes, keep_tensors: bool = False):
    """A LiteRT interpreter of the flatbuffer ``model``, allocated; ``keep_tensors`` keeps every intermediate tensor
    readable (no delegate, all tensors preserved)."""
    from firmware_host.infer.interpreter import _litert
    litert = _litert()
    debug = {}
    if keep_tensors:
        debug = dict(experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    with native_quiet():
        interpreter = litert.Interpreter(model_content=model, **debug)
        interpreter.allocate_tensors()
    return interpreter


def _names(interpreter) -> dict[int, str]:
    return {d["index"]: d["name"] for d in interpreter.get_tensor_details()}


def readers(interpreter) -> dict[str, list[str]]:
    """Output tensor name of each compute op -> the output names of the compute ops that read it (through
    QUANTIZE and DEQUANTIZE ops)."""
    names, sources, ops = _names(interpreter), _sources(interpreter), _compute_ops(interpreter)
    out: dict[str, list[str]] = {names[int(op["outputs"][0])]: [] for op in ops}
    for op in ops:
        reader = names[int(op["outputs"][0])]
        for t in (int(t) for t in op["inputs"] if t >= 0):
            source = names.get(sources.get(t, t))
            if source in out and reader not in out[source]:
                out[source].append(reader)
    return out


def age_agreement(reference: tuple[np.ndarray, np.ndarray], quantized: tuple[np.ndarray, np.ndarray]) -> dict:
    """Float reference against quantized file at the model's output, per image: the age error quantization adds
    (|age of the file - age of its float reference file|, mean and worst), gender decisions flipped."""
    diff = np.abs(quantized[0] - reference[0])
    return {"images": int(len(diff)), "mean_quantization_error": float(diff.mean()),
            "max_quantization_error": float(diff.max()),
            "gender_flips": int(np.sum((reference[1] >= 0.5) != (quantized[1] >= 0.5))),
            "age_float": [round(float(a), 3) for a in reference[0]],
            "age_quantized": [round(float(a), 3) for a in quantized[0]]}


def float_twin(qat_model, float_model):
    """The QAT model's weights in the float model's graph: the QAT file's float reference, without fake quantization.

    A QAT wrapper (``quant_<layer>``) holds its layer's weights itself or in the wrapped layer; either way they are
    found by layer name and weight name.
    """
    def key(layer_name: str, weight) -> str:
        return f"{layer_name.removeprefix('quant_')}/{weight.name.split('/')[-1]}"

    trained = {key(layer.name, w): w for layer in qat_model.layers for w in layer.weights}
    twin = keras().models.clone_model(float_model)
    for layer in twin.layers:
        missing = [w.name for w in layer.weights if key(layer.name, w) not in trained]
        if missing:
            raise EdgeAgeError(f"the QAT model has no weights {', '.join(missing)} for layer {layer.name}: cannot "
                               "compare its files layer by layer")
        if layer.weights:
            layer.set_weights([trained[key(layer.name, w)].numpy() for w in layer.weights])
    return twin
