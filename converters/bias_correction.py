"""Bias correction: each weighted layer's bias absorbs the mean error its 8-bit weights make.

A layer y = W x + b with its weights rounded to int8 (W_q) is off on average by (W - W_q)·E[x]; adding that to the
bias removes the mean of the error, which the layers after it would otherwise carry and grow. E[x] is the
per-channel mean of the layer's input in the float32 file of the same source model over the calibration inputs,
W the same op's weights there: the files, not the Keras model, because TFLite folds BatchNorm into the weights.
The correction goes into the quantized file's integer biases, in their own scale (input scale times each output
channel's weight scale). On the reference model it brings a float file with int8-rounded weights from 1.10 to
0.18 years of the float model (docs/conversion.md, "What limits int16x8").

The flatbuffer is read and written with TensorFlow's ``tensorflow.lite.tools.flatbuffer_utils``.
"""
from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.tf_setup import tensorflow
from firmware_host.errors import EdgeAgeError
from firmware_host.quiet import native_quiet

log = logging.getLogger(__name__)
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass
class _Op:
    """One weighted op of a flatbuffer: its type and input, weight and bias tensor indices (bias -1: none)."""

    kind: str
    input: int
    weights: int
    bias: int
    operator: object  # the flatbuffer's OperatorT


def _tools():
    tensorflow()  # TensorFlow's own setup (quiet import) before its lite tools
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils, schema


def _weighted_ops(model) -> list[_Op]:
    flatbuffer_utils, _ = _tools()
    ops = []
    for op in model.subgraphs[0].operators:
        kind = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        if kind in WEIGHTED_OPS:
            inputs = [int(t) for t in op.inputs]
            ops.append(_Op(kind, inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else -1, op))
    return ops


def _array(model, tensor: int, dtype) -> np.ndarray:
    t = model.subgraphs[0].tensors[tensor]
    data = model.buffers[t.buffer].data
    if data is None:
        raise EdgeAgeError(f"tensor {t.name.decode(errors='replace')} holds no constant data")
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype=dtype).reshape([int(d) for d in t.shape])


def _dequantized(model, tensor: int) -> np.ndarray:
    """An int8 per-channel (or per-tensor) weight tensor as float."""
    t = model.subgraphs[0].tensors[tensor]
    q = t.quantization
    shape = [1] * len(t.shape)
    shape[q.quantizedDimension] = -1
    scale = np.asarray(q.scale, np.float64).reshape(shape if len(q.scale) > 1 else [1] * len(t.shape))
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float64).reshape(scale.shape)
    return (_array(model, tensor, np.int8).astype(np.float64) - zero) * scale


def _pair(quantized, reference) -> list[tuple[_Op, _Op]]:
    """The weighted ops of the two files, paired one to one; EdgeAgeError when they are not the same layers."""
    q_ops, r_ops = _weighted_ops(quantized), _weighted_ops(reference)
    shape = lambda model, op: [int(d) for d in model.subgraphs[0].tensors[op.weights].shape]  # noqa: E731
    if [o.kind for o in q_ops] != [o.kind for o in r_ops]:
        raise EdgeAgeError(f"the float file is not the quantized file's source: {len(r_ops)} weighted layers "
                           f"against {len(q_ops)}, or of other types")
    _, schema = _tools()
    for i, (q, r) in enumerate(zip(q_ops, r_ops)):
        if reference.subgraphs[0].tensors[r.weights].type != schema.TensorType.FLOAT32:
            raise EdgeAgeError(f"the float file's weighted layer {i} ({r.kind}) does not hold float32 weights: "
                               "not a float32 file")
        if shape(quantized, q) != shape(reference, r):
            raise EdgeAgeError(f"the float file is not the quantized file's source: weighted layer {i} ({q.kind}) "
                               f"has weights {shape(reference, r)} there, {shape(quantized, q)} here")
    return list(zip(q_ops, r_ops))


def input_means(reference: bytes, inputs: Iterable[np.ndarray], tensors: list[int]) -> dict[int, np.ndarray]:
    """Per-channel (last axis) mean of each of ``tensors`` in the float file over ``inputs`` (its input batches)."""
    from converters.layer_error import model_interpreter
    interpreter = model_interpreter(reference, keep_tensors=True)
    runner = interpreter.get_signature_runner()
    (name, _), = runner.get_input_details().items()
    sums: dict[int, np.ndarray] = {}
    counts = dict.fromkeys(tensors, 0)
    for batch in inputs:
        runner(**{name: np.asarray(batch, np.float32)})
        for t in tensors:
            value = interpreter.get_tensor(t).astype(np.float64)
            value = value.reshape(-1, value.shape[-1])
            sums[t] = sums.get(t, 0.0) + value.sum(axis=0)
            counts[t] += len(value)
    if not sums:
        raise EdgeAgeError("bias correction needs calibration inputs: none were given")
    return {t: sums[t] / counts[t] for t in tensors}


def _shift(kind: str, error: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(W - W_q)·E[x] per output channel, for TFLite's weight layouts: CONV_2D [out, h, w, in],
    DEPTHWISE_CONV_2D [1, h, w, in * multiplier], FULLY_CONNECTED [out, in]."""
    if kind == "DEPTHWISE_CONV_2D":
        return error.sum(axis=(0, 1, 2)) * np.repeat(mean, error.shape[-1] // len(mean))
    return error.reshape(len(error), -1, len(mean)).sum(axis=1) @ mean


@dataclass
class Corrected:
    """A bias-corrected file and how many of its weighted layers had their bias changed (of ``weighted``)."""

    model: bytes
    layers: int
    weighted: int


def correct_biases(quantized: bytes, reference: bytes | Path, inputs: Iterable[np.ndarray]) -> Corrected:
    """``quantized`` (int8 weights, integer biases) with every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
    bias plus round((W - W_q)·E[x] / bias scale); W and E[x] from ``reference``, the float32 file of the same
    source model, run on ``inputs`` (batches of its float input, e.g. the normalized calibration images)."""
    flatbuffer_utils, schema = _tools()
    if isinstance(reference, Path):
        reference = reference.read_bytes()
    with native_quiet():
        q_model = flatbuffer_utils.read_model_from_bytearray(bytearray(quantized))
        r_model = flatbuffer_utils.read_model_from_bytearray(bytearray(reference))
    pairs = _pair(q_model, r_model)
    tensors = q_model.subgraphs[0].tensors
    readers = Counter(int(t) for op in q_model.subgraphs[0].operators for t in op.inputs)
    users = Counter(t.buffer for t in tensors)
    kinds = {schema.TensorType.INT32: np.dtype("<i4"), schema.TensorType.INT64: np.dtype("<i8")}
    todo = [(q, r) for q, r in pairs if q.bias >= 0 and tensors[q.weights].type == schema.TensorType.INT8
            and tensors[q.bias].type in kinds]
    means = input_means(reference, inputs, sorted({r.input for _, r in todo}))
    for q, r in todo:
        bias = tensors[q.bias]
        error = _array(r_model, r.weights, np.float32).astype(np.float64) - _dequantized(q_model, q.weights)
        step = _shift(q.kind, error, means[r.input]) / np.asarray(bias.quantization.scale, np.float64)
        dtype = kinds[bias.type]
        info = np.iinfo(dtype)
        values = np.clip(_array(q_model, q.bias, dtype).astype(np.int64) + np.round(step).astype(np.int64),
                         info.min, info.max).astype(dtype)
        data = np.frombuffer(values.tobytes(), np.uint8)
        if readers[q.bias] > 1 or users[bias.buffer] > 1:  # shared (equal biases are merged): give it its own
            bias = copy.deepcopy(bias)
            bias.name = bias.name + b"/bias_corrected"
            q_model.buffers.append(schema.BufferT(data=data))
            bias.buffer = len(q_model.buffers) - 1
            tensors.append(bias)
            q.operator.inputs[2] = len(tensors) - 1
        else:
            q_model.buffers[bias.buffer].data = data
    log.info("bias correction: %d of %d weighted layers corrected", len(todo), len(pairs))
    return Corrected(flatbuffer_utils.convert_object_to_bytearray(q_model), len(todo), len(pairs))


class BiasCorrection:
    """Bias correction for a target's file, against ``reference`` (the float32 file of its source model); after
    ``apply``, ``to_dict`` is what the report shows."""

    def __init__(self, reference: Path):
        self.reference = reference
        self.result: Corrected | None = None

    def apply(self, model: bytes, calibration) -> bytes:
        """``model`` corrected with the means over ``calibration`` (a representative dataset: lists of inputs)."""
        self.result = correct_biases(model, self.reference, (sample[0] for sample in calibration()))
        return self.result.model

    def to_dict(self) -> dict:
        if self.result is None:
            return {"applied": False}
        return {"applied": True, "layers": self.result.layers, "weighted_layers": self.result.weighted}
