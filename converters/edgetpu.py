"""Edge TPU readiness of a ``.tflite`` file, and the ``edgetpu_compiler`` run when one is installed.

The rules follow Coral's page "TensorFlow models on the Edge TPU" (coral.ai/docs/edgetpu/models-intro):
the model requirements and the supported-operations table with its known limitations. The compiler
cuts the graph once: the first op that cannot map and every op after it run on the CPU. This check
reads only what the file says (types, shapes, axes); the compiler may still refuse an op for reasons
it alone knows (op versions, sizes, precision), so compile on a machine that has it to be sure.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.infer.graph import EIGHT_BIT, Op, TensorInfo, read_ops

# Coral's supported-operations table, as TFLite builtin op names.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
CONSTANT_TYPES = EIGHT_BIT | {"int32"}  # 8-bit weights, int32 biases, shapes and axes
REDUCTIONS = frozenset({"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"})  # none may reduce over the batch
COMPILER = "edgetpu_compiler"

# Statuses, in the compiler log's words where it has them.
MAPPED = "Mapped to Edge TPU"
AFTER_CUT = "More than one subgraph is not supported: runs on the CPU after the first unmapped op"
NOT_SUPPORTED = "Operation not supported by the Edge TPU"
DATA_TYPE = "Operation is working on an unsupported data type (not 8-bit quantized)"
DYNAMIC = "Tensor size is not constant"
BATCH = "Input batch size is not 1"
RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
BATCH_AXIS = "Operation works on the batch dimension"
NOT_1D = "Fully-connected output is not one-dimensional"

Problem = tuple[str, str]  # (status, detail)


@dataclass(frozen=True)
class OpStatus:
    """One op: ``reason`` says why it cannot map to the Edge TPU by itself ("" when it can)."""

    index: int
    name: str
    reason: str = ""
    detail: str = ""

    @property
    def supported(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Compatibility:
    """Which ops of a file would run on the Edge TPU."""

    model: str
    ops: tuple[OpStatus, ...]
    first_unmapped: int | None  # index of the op where the compiler cuts the graph; None if it does not

    @property
    def all_mapped(self) -> bool:
        return self.first_unmapped is None

    def status(self, op: OpStatus) -> str:
        """What the compiler would do with ``op``."""
        if self.first_unmapped is None or op.index < self.first_unmapped:
            return MAPPED
        return op.reason or AFTER_CUT

    def summary(self) -> list[tuple[str, int, str]]:
        """(op name, count, status) rows, in order of first appearance, like the compiler's log."""
        rows = Counter((op.name, self.status(op)) for op in self.ops)
        return [(name, n, status) for (name, status), n in rows.items()]

    def to_dict(self) -> dict:
        return {"model": self.model, "all_mapped": self.all_mapped, "first_unmapped": self.first_unmapped,
                "ops": [{**asdict(op), "status": self.status(op)} for op in self.ops],
                "summary": [{"op": name, "count": n, "status": s} for name, n, s in self.summary()]}

    def to_markdown(self) -> str:
        head = ["| Operator | Count | Status |", "| --- | --- | --- |"]
        return "\n".join(head + [f"| {name} | {n} | {status} |" for name, n, status in self.summary()]) + "\n"


def _tensor_problem(t: TensorInfo, graph_inputs: set[int]) -> Problem | None:
    """The model requirements, for one tensor of an op."""
    if t.dtype not in (CONSTANT_TYPES if t.constant else EIGHT_BIT):
        return DATA_TYPE, f"{t.name} is {t.dtype}"
    if t.constant:
        return None
    # The converter writes a -1 batch into the signature of every Keras model and the interpreter
    # allocates it as 1; a -1 anywhere else is a size the file leaves open. Shapes computed at run
    # time (SHAPE ops behind a Reshape over the -1 batch) are caught as unsupported ops.
    if any(d < 0 for d in t.shape_signature[1:]):
        return DYNAMIC, f"{t.name} has shape signature {list(t.shape_signature)}"
    if t.index in graph_inputs and t.shape and t.shape[0] != 1:
        return BATCH, f"{t.name} has batch size {t.shape[0]}"
    if len(t.shape) > 3 and any(d != 1 for d in t.shape[:-3]):
        return RANK, f"{t.name} has shape {list(t.shape)}"
    return None


def _operand(op: Op) -> tuple[int, ...]:
    """The second input's constant value (a reduction's axes, PAD's paddings); empty when unknown."""
    return (op.inputs[1].value or ()) if len(op.inputs) > 1 else ()


def _limit_problem(op: Op) -> Problem | None:
    """The per-op limits of Coral's table that shapes and constant axes show."""
    operand = _operand(op)
    if op.name in REDUCTIONS and 0 in {a % len(op.inputs[0].shape) for a in operand}:
        return BATCH_AXIS, f"{op.name} reduces over axes {list(operand)}"
    if op.name == "PAD" and any(operand[:2]):
        return BATCH_AXIS, f"PAD paddings {list(operand)}"
    if op.name == "FULLY_CONNECTED" and sum(d > 1 for d in op.outputs[0].shape[1:]) > 1:
        return NOT_1D, f"output shape {list(op.outputs[0].shape)}"
    return None


def _problem(op: Op, graph_inputs: set[int]) -> Problem | None:
    """Why ``op`` cannot map to the Edge TPU, or None when it can."""
    if op.name not in SUPPORTED_OPS:
        return NOT_SUPPORTED, op.name
    problems = (_tensor_problem(t, graph_inputs) for t in (*op.inputs, *op.outputs))
    return next((p for p in problems if p), None) or _limit_problem(op)


def _graph_inputs(ops: list[Op]) -> set[int]:
    produced = {t.index for op in ops for t in op.outputs}
    return {t.index for op in ops for t in op.inputs if not t.constant} - produced


def _status(op: Op, graph_inputs: set[int]) -> OpStatus:
    reason, detail = _problem(op, graph_inputs) or ("", "")
    return OpStatus(op.index, op.name, reason, detail)


def check(path: str | os.PathLike) -> Compatibility:
    """Check every op of a ``.tflite`` file against the Edge TPU rules; find where the graph would be cut."""
    ops = read_ops(path)
    inputs = _graph_inputs(ops)
    statuses = tuple(_status(op, inputs) for op in ops)
    first = next((s.index for s in statuses if not s.supported), None)
    return Compatibility(model=str(path), ops=statuses, first_unmapped=first)


@dataclass(frozen=True)
class CompileResult:
    """The compiled file and its log, or (``compiled=False``) the command to run where the compiler is."""

    compiled: bool
    command: str
    model: Path | None = None
    log: Path | None = None


def _arguments(path: Path, out_dir: Path) -> list[str]:
    return ["-s", "-o", str(out_dir), str(path)]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _run(executable: str, path: Path, out_dir: Path, timeout: float) -> tuple[int, str]:
    """Run the compiler; return its exit status and its stdout and stderr together."""
    try:
        proc = subprocess.run([executable, *_arguments(path, out_dir)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EdgeAgeError(f"{COMPILER} did not finish {path.name} within {timeout:.0f} s") from None
    except OSError as exc:
        raise EdgeAgeError(f"{COMPILER} could not be started: {exc.strerror or exc}") from None
    return proc.returncode, proc.stdout


def compile_edgetpu(path: str | os.PathLike, out_dir: str | os.PathLike, timeout: float = 600) -> CompileResult:
    """Compile ``path`` with ``edgetpu_compiler`` into ``out_dir`` (log kept beside the result).

    Without the compiler on PATH nothing runs: the result carries the command line to run elsewhere.
    """
    path, out_dir = Path(path), Path(out_dir)
    command = shlex.join([COMPILER, *_arguments(path, out_dir)])
    executable = shutil.which(COMPILER)
    if executable is None:
        return CompileResult(compiled=False, command=command)
    if not path.is_file():
        raise EdgeAgeError(f"model file {path} does not exist")
    atomic.writable_dir(out_dir)
    returncode, output = _run(executable, path, out_dir, timeout)
    log = atomic.write_text(out_dir / f"{path.stem}_edgetpu.log", output)
    model = out_dir / f"{path.stem}_edgetpu.tflite"
    if returncode != 0 or not model.is_file():
        raise EdgeAgeError(f"{COMPILER} failed on {path.name} (log: {log}): {_last_line(output)}")
    return CompileResult(compiled=True, command=command, model=model, log=log)
