"""LiteRT interpreter adapters in the pycoral style: make, set input, get outputs.

The interpreter comes from ai-edge-litert, else tflite-runtime, else ``tf.lite``
(only when TensorFlow is already installed); no TensorFlow is imported otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            try:
                import tensorflow as tf
            except ImportError:
                raise EdgeAgeError("no TFLite interpreter: pip install ai-edge-litert") from None
            Interpreter = tf.lite.Interpreter
    return Interpreter


def make_interpreter(model: str | os.PathLike, threads: int = 1):
    """A ready (allocated) CPU interpreter for a ``.tflite`` file; XNNPACK is applied by default."""
    path = Path(model)
    if not path.is_file():
        raise EdgeAgeError(f"model file {path} does not exist")
    try:
        interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeAgeError(f"{path} is not a valid TFLite model: {str(exc).splitlines()[0][:200]}") from None
    return interpreter


def input_size(interpreter) -> int:
    """The square input size of the model."""
    return int(interpreter.get_input_details()[0]["shape"][1])


def _quantize(pixels: np.ndarray, detail: dict) -> np.ndarray:
    """uint8 RGB faces as the input tensor wants them: normalised floats or quantized integers."""
    from firmware_host.preprocess import normalize
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if dtype == np.float32:
        return normalize(pixels)
    info = np.iinfo(dtype)
    return np.clip(np.round(normalize(pixels) / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return ((value.astype(np.float32) - zero) * scale) if scale else value.astype(np.float32)


def invoke(interpreter, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Run a batch of uint8 RGB faces (N, S, S, 3); return every output, dequantized, by signature name."""
    runner = interpreter.get_signature_runner()
    (in_name, in_detail), = runner.get_input_details().items()
    if tuple(in_detail["shape"][1:]) != tuple(pixels.shape[1:]):
        raise EdgeAgeError(f"model expects input {tuple(in_detail['shape'][1:])}, got {tuple(pixels.shape[1:])}")
    raw = runner(**{in_name: _quantize(pixels, in_detail)})
    details = runner.get_output_details()
    return {name: _dequantize(value, details[name]) for name, value in raw.items()}


def pick_outputs(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(age output, gender probability) from outputs named ``*age`` and ``*gender``."""
    age = next((v for k, v in outputs.items() if k.endswith("age")), None)
    gender = next((v for k, v in outputs.items() if k.endswith("gender")), None)
    if age is None or gender is None:
        raise EdgeAgeError(f"model outputs {sorted(outputs)} are not named age and gender")
    return age, gender[:, 0]
