"""LiteRT interpreter adapters in the pycoral style: make, set input, get outputs.

The interpreter comes from ai-edge-litert, else tflite-runtime; TensorFlow is never imported here.
Delegates: ``cpu`` (XNNPACK, LiteRT's default), ``gpu`` (the GPU delegate library) and
``edgetpu`` (``libedgetpu``, for models compiled by ``edgetpu_compiler``).
"""
from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError, literal
from firmware_host.infer.contract import pick_outputs  # noqa: F401  (the model-output contract, used with invoke)
from firmware_host.infer.preprocess import PIXEL_OFFSET, PIXEL_SCALE, normalize
from firmware_host.quiet import native_quiet

GPU_LIBRARY_ENV = "EDGE_AGE_GPU_DELEGATE"
GPU_LIBRARY = "libtensorflowlite_gpu_delegate.so"
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EDGETPU_OP = b"edgetpu-custom-op"
MAX_THREADS = 64  # each a thread of the process: more only slow a small model down (9999 took seconds a face)


def _gpu_library() -> str:
    return os.environ.get(GPU_LIBRARY_ENV) or GPU_LIBRARY


def _edgetpu_library() -> str:
    return EDGETPU_LIBRARY.get(platform.system(), EDGETPU_LIBRARY["Linux"])


def _edgetpu_options(device: str | None) -> dict:
    return {"device": device} if device else {}


@dataclass(frozen=True)
class DelegateSpec:
    """One row of the delegate table: where its library is looked for, how to install it, what stops it."""

    name: str
    library: Callable[[], str] | None  # the library's default path or name (None: LiteRT's own XNNPACK)
    install: str = ""                  # the hint when the library cannot be loaded ({option}: the CLI flag)
    no_device: str = ""                # the message when the library loads but no device answers ({path}, {at})
    options: Callable[[str | None], dict] = lambda device: {}


DELEGATE_TABLE = {
    "cpu": DelegateSpec("cpu", None),
    "gpu": DelegateSpec(
        "gpu", _gpu_library,
        install=f"build it from LiteRT (//tflite/delegates/gpu:{GPU_LIBRARY}) and pass {{}} or set {GPU_LIBRARY_ENV}",
        no_device="the GPU delegate in {path} could not start: no usable OpenCL/OpenGL ES GPU"),
    "edgetpu": DelegateSpec(
        "edgetpu", _edgetpu_library,
        install="install the Edge TPU runtime: sudo apt install libedgetpu1-std (Coral's apt repository)",
        no_device="no Edge TPU found{at}: plug in the Coral accelerator (USB 3 port) or check the PCIe driver "
                  "(ls /dev/apex_0)",
        options=_edgetpu_options),
}
DELEGATES = tuple(DELEGATE_TABLE)


def _litert():
    """The interpreter module: ai-edge-litert, else tflite-runtime."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
        except ImportError:
            raise EdgeAgeError("no TFLite interpreter: pip install ai-edge-litert") from None
    return interpreter


def load_delegate(delegate: str, library: str | None = None, device: str | None = None):
    """The LiteRT delegate object for ``gpu`` or ``edgetpu`` (``None`` for ``cpu``), or a one-line error."""
    if delegate not in DELEGATES:
        raise EdgeAgeError(f"unknown delegate {delegate!r}; choose from {', '.join(DELEGATES)}")
    spec = DELEGATE_TABLE[delegate]
    if spec.library is None:
        return None
    path = library or spec.library()
    try:  # checked first: a failed load_delegate leaves a noisy half-made object behind
        library_handle = ctypes.CDLL(path)
    except OSError:
        raise EdgeAgeError(f"{delegate} delegate library {literal(path)} cannot be loaded: {spec.install}",
                           option="--delegate-library", parameter="a library path") from None
    if not all(hasattr(library_handle, f"tflite_plugin_{verb}_delegate") for verb in ("create", "destroy")):
        raise EdgeAgeError(f"{path} is not a {delegate} delegate library: it has no LiteRT delegate entry points "
                           "(tflite_plugin_create_delegate)")
    try:
        return _litert().load_delegate(path, spec.options(device))
    except (ValueError, RuntimeError, OSError):
        raise EdgeAgeError(spec.no_device.format(path=path, at=" at " + device if device else "")) from None


def check_threads(threads: int) -> int:
    """``threads`` if it is from 1 to MAX_THREADS, else a one-line error."""
    if not 1 <= threads <= MAX_THREADS:
        raise EdgeAgeError(f"{{}} must be from 1 to {MAX_THREADS}, not {threads}", option="--threads",
                           parameter="threads")
    return threads


def make_interpreter(model: str | os.PathLike, threads: int = 1, delegate: str = "cpu",
                     library: str | None = None, device: str | None = None, *, keep_tensors: bool = False):
    """A ready (allocated) interpreter for a ``.tflite`` file on ``delegate`` (cpu = XNNPACK).

    ``keep_tensors`` keeps every intermediate tensor readable after ``invoke`` and runs LiteRT's built-in
    kernels without XNNPACK (which would fuse ops and never write their outputs).
    """
    path = Path(model)
    if not path.is_file():
        raise EdgeAgeError(f"model file {path} does not exist")
    check_threads(threads)
    compiled = EDGETPU_OP in path.read_bytes()
    if delegate == "edgetpu" and not compiled:
        raise EdgeAgeError(f"{path} is not compiled for the Edge TPU: run edgetpu_compiler on it first")
    if compiled and delegate != "edgetpu":
        raise EdgeAgeError(f"{literal(path)} is compiled for the Edge TPU and runs only with {{}}",
                           option="--delegate edgetpu", parameter="delegate='edgetpu'")
    loaded = load_delegate(delegate, library, device)
    litert = _litert()
    debug = {}
    if keep_tensors:
        debug = dict(experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        with native_quiet():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            interpreter = litert.Interpreter(model_path=str(path), num_threads=threads,
                                             experimental_delegates=[loaded] if loaded else None, **debug)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeAgeError(f"{path} is not a valid TFLite model: {str(exc).splitlines()[0][:200]}") from None
    return interpreter


@dataclass(frozen=True)
class Coverage:
    """How much of the graph the delegates took: ops in the file, ops delegated, delegate partitions."""

    ops: int
    delegated: int
    partitions: int
    not_delegated: dict[str, int]

    @property
    def fraction(self) -> float:
        return self.delegated / self.ops if self.ops else 0.0

    def to_dict(self) -> dict:
        return {"ops": self.ops, "delegated": self.delegated, "fraction": round(self.fraction, 4),
                "partitions": self.partitions, "not_delegated": self.not_delegated}


def coverage(interpreter) -> Coverage:
    """Which ops the applied delegates replaced, found by walking each delegate node back to its inputs."""
    details = interpreter._get_ops_details()
    nodes = [d for d in details if d["op_name"] == "DELEGATE"]
    ops = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in ops for t in op["outputs"] if t >= 0}
    by_index = {op["index"]: op for op in ops}
    taken: set[int] = set()
    for node in nodes:
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            op = producer.get(tensor)
            if tensor in boundary or op is None or op in taken:
                continue
            taken.add(op)
            stack.extend(int(t) for t in by_index[op]["inputs"] if t >= 0)
    left: dict[str, int] = {}
    for op in ops:
        if op["index"] not in taken:
            left[op["op_name"]] = left.get(op["op_name"], 0) + 1
    return Coverage(len(ops), len(taken), len(nodes), left)


def input_size(interpreter) -> int:
    """The square input size of the model."""
    return int(interpreter.get_input_details()[0]["shape"][1])


def _quantize(pixels: np.ndarray, detail: dict, pixel_scale: float, pixel_offset: float) -> np.ndarray:
    """uint8 RGB faces as the input tensor wants them: normalised floats or quantized integers."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if dtype == np.float32:
        return normalize(pixels, pixel_scale, pixel_offset)
    info = np.iinfo(dtype)
    return np.clip(np.round(normalize(pixels, pixel_scale, pixel_offset) / scale + zero), info.min,
                   info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return ((value.astype(np.float32) - zero) * scale) if scale else value.astype(np.float32)


def invoke(interpreter, pixels: np.ndarray, pixel_scale: float = PIXEL_SCALE,
           pixel_offset: float = PIXEL_OFFSET) -> dict[str, np.ndarray]:
    """Run a batch of uint8 RGB faces (N, S, S, 3), normalised as ``x * pixel_scale + pixel_offset``;
    return every output, dequantized, by signature name."""
    runner = interpreter.get_signature_runner()
    (in_name, in_detail), = runner.get_input_details().items()
    expected = tuple(int(d) for d in in_detail["shape"][1:])  # plain ints: no np.int32(96) in the message
    if expected != tuple(pixels.shape[1:]):
        raise EdgeAgeError(f"model expects input {expected}, got {tuple(pixels.shape[1:])}")
    raw = runner(**{in_name: _quantize(pixels, in_detail, pixel_scale, pixel_offset)})
    details = runner.get_output_details()
    return {name: _dequantize(value, details[name]) for name, value in raw.items()}
