"""The ops and tensors of a ``.tflite`` file, read with the LiteRT interpreter (no TensorFlow).

A tensor is *constant* (weights, biases, axes, shapes) when it is neither a graph input nor the
output of any op: the interpreter exposes no buffer table, but every tensor that is not fed and
not computed must come from a buffer in the file. (Variable tensors, such as LSTM state, would
count as constant too; none of our graphs has them.)

The ``DELEGATE`` nodes that the interpreter appends when it applies XNNPACK are not part of the
file and are left out.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from firmware_host.infer.interpreter import make_interpreter

EIGHT_BIT = frozenset({"int8", "uint8"})
_DELEGATE = "DELEGATE"
_MAX_VALUE_SIZE = 16  # integer constants up to this many elements keep their values (axes, paddings)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as an op sees it; ``value`` holds a small integer constant's contents, else None."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    constant: bool
    index: int
    value: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Op:
    """One node of the graph, in execution order."""

    index: int
    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


@dataclass(frozen=True)
class IOTensor:
    """A graph input or output: its type and quantization (scale 0 means not quantized)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int


def _file_ops(interpreter) -> list[dict]:
    return [op for op in interpreter._get_ops_details() if op["op_name"] != _DELEGATE]


def _constant_indices(interpreter, ops: list[dict]) -> set[int]:
    """Tensors that are neither graph inputs nor produced by an op."""
    produced = {int(i) for op in ops for i in op["outputs"]}
    fed = {d["index"] for d in interpreter.get_input_details()}
    return {t["index"] for t in interpreter.get_tensor_details()} - produced - fed


def _small_integer_value(interpreter, detail: dict) -> tuple[int, ...] | None:
    if not np.issubdtype(detail["dtype"], np.integer) or int(np.prod(detail["shape"])) > _MAX_VALUE_SIZE:
        return None
    return tuple(int(v) for v in np.ravel(interpreter.get_tensor(detail["index"])))


def _tensor_infos(interpreter, ops: list[dict]) -> dict[int, TensorInfo]:
    constants = _constant_indices(interpreter, ops)
    infos = {}
    for d in interpreter.get_tensor_details():
        constant = d["index"] in constants
        infos[d["index"]] = TensorInfo(
            name=d["name"], dtype=np.dtype(d["dtype"]).name,
            shape=tuple(int(s) for s in d["shape"]),
            shape_signature=tuple(int(s) for s in d["shape_signature"]),
            constant=constant, index=d["index"], value=_small_integer_value(interpreter, d) if constant else None)
    return infos


def read_ops(path: str | os.PathLike) -> list[Op]:
    """Every op of the main graph with its input and output tensors (optional inputs left out)."""
    interpreter = make_interpreter(path)
    ops = _file_ops(interpreter)
    infos = _tensor_infos(interpreter, ops)
    return [Op(index=op["index"], name=op["op_name"],
               inputs=[infos[int(i)] for i in op["inputs"] if i >= 0],
               outputs=[infos[int(i)] for i in op["outputs"] if i >= 0]) for op in ops]


def op_counts(ops: list[Op]) -> dict[str, int]:
    """How many ops of each kind, most frequent first."""
    return dict(Counter(op.name for op in ops).most_common())


def activations(ops: list[Op]) -> list[TensorInfo]:
    """The non-constant tensors that flow between ops (graph inputs and outputs included), once each."""
    seen = {t.index: t for op in ops for t in (*op.inputs, *op.outputs) if not t.constant}
    return list(seen.values())


def activation_types(ops: list[Op]) -> dict[str, int]:
    """How many flowing tensors of each type (``{"int16": 70}`` for a 16x8 file), most frequent first."""
    return dict(Counter(t.dtype for t in activations(ops)).most_common())


def integer_only(ops: list[Op]) -> bool:
    """True when every tensor flowing between ops is int8 or uint8 (constants may be int32)."""
    return all(t.dtype in EIGHT_BIT for t in activations(ops))


def _io_tensor(detail: dict) -> IOTensor:
    scale, zero_point = detail["quantization"]
    return IOTensor(name=detail["name"], dtype=np.dtype(detail["dtype"]).name,
                    shape=tuple(int(s) for s in detail["shape"]), scale=float(scale), zero_point=int(zero_point))


def io_types(path: str | os.PathLike) -> tuple[list[IOTensor], list[IOTensor]]:
    """(inputs, outputs) of the graph with dtype, shape and quantization."""
    interpreter = make_interpreter(path)
    return ([_io_tensor(d) for d in interpreter.get_input_details()],
            [_io_tensor(d) for d in interpreter.get_output_details()])
