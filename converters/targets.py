"""TFLite conversion targets: one table, one small function per target (Ultralytics-exporter style).

Each function takes the source Keras model (float or QAT, as the table says) and,
for post-training quantization, a representative dataset, and returns the bytes
of the ``.tflite`` file. Full-integer files keep the age logits as an output: the
softmax and expected age are computed on the host, where int8 cannot blur them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from edge_age.tf_setup import tensorflow
from firmware_host.errors import EdgeAgeError


def _converter(model):
    return tensorflow().lite.TFLiteConverter.from_keras_model(model)


def float32(model, calibration=None) -> bytes:
    """Plain float32: the reference every other file is compared with."""
    return _converter(model).convert()


def float16(model, calibration=None) -> bytes:
    """Float16 weights, float32 compute on CPU; the GPU delegate runs it in half precision."""
    tf = tensorflow()
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


def dynamic(model, calibration=None) -> bytes:
    """Dynamic-range quantization: int8 weights, float activations, no calibration."""
    conv = _converter(model)
    conv.optimizations = [tensorflow().lite.Optimize.DEFAULT]
    return conv.convert()


def _full_integer(model, io_type, calibration=None) -> bytes:
    """Every tensor 8-bit, inputs and outputs of ``io_type``; ranges from ``calibration`` or from QAT."""
    tf = tensorflow()
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if calibration is not None:
        conv.representative_dataset = calibration
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = io_type
    conv.inference_output_type = io_type
    return conv.convert()


def int8(model, calibration: Callable[[], Iterable] | None = None) -> bytes:
    """Full-integer post-training quantization of the float model, int8 input and output (CPU/XNNPACK)."""
    if calibration is None:
        raise EdgeAgeError("the int8 target needs calibration images")
    return _full_integer(model, tensorflow().int8, calibration)


def int8_qat(model, calibration=None) -> bytes:
    """Full integer from the QAT model (its fake-quant ranges), int8 input and output."""
    return _full_integer(model, tensorflow().int8)


def edgetpu(model, calibration=None) -> bytes:
    """Full integer from the QAT model with uint8 input (raw 0..255 pixels) for the Edge TPU compiler."""
    return _full_integer(model, tensorflow().uint8)


@dataclass(frozen=True)
class Target:
    """One row of the export table."""

    name: str
    source: str          # "float" or "qat": which Keras model it converts
    calibrated: bool     # needs representative images
    device: str          # where the file is meant to run
    build: Callable[..., bytes]


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("float32", "float", False, "CPU", float32),
    Target("float16", "float", False, "GPU delegate", float16),
    Target("dynamic", "float", False, "CPU", dynamic),
    Target("int8", "float", True, "CPU / XNNPACK", int8),
    Target("int8-qat", "qat", False, "CPU / XNNPACK", int8_qat),
    Target("edgetpu", "qat", False, "Edge TPU (after edgetpu_compiler)", edgetpu),
)}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeAgeError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[name]
