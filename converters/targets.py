"""TFLite conversion targets: one table, one small function per target (Ultralytics-exporter style).

Each function takes the source model (float or QAT, as the table says), exported
as a SavedModel (``converters.sources``), and, for post-training quantization, a
representative dataset, and returns the bytes of the ``.tflite`` file. Full-integer
files keep the age logits as an output: the softmax and expected age are computed
on the host, where int8 cannot blur them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from converters.tf_setup import tensorflow
from firmware_host.errors import EdgeAgeError
from firmware_host.quiet import native_quiet


class Search(Protocol):
    """What ``int8_mixed`` needs of a search (``converters.mixed.Search``): a run that returns the chosen file."""

    def run(self, source: Path, calibration: Callable[[], Iterable]): ...


class Correction(Protocol):
    """What ``int8`` and ``int16x8`` need of a bias correction (``converters.bias_correction.BiasCorrection``)."""

    def apply(self, model: bytes, calibration: Callable[[], Iterable]) -> bytes: ...


def _converter(source: Path):
    return tensorflow().lite.TFLiteConverter.from_saved_model(str(source))


def _convert(conv) -> bytes:
    """The converter's flatbuffer; its C++ log lines ("Ignored output_format", ...) hidden unless --verbose."""
    with native_quiet():
        return conv.convert()


def float32(source: Path, calibration=None) -> bytes:
    """Plain float32: the reference every other file is compared with."""
    return _convert(_converter(source))


def float16(source: Path, calibration=None) -> bytes:
    """Float16 weights, float32 compute on CPU; the GPU delegate runs it in half precision."""
    tf = tensorflow()
    conv = _converter(source)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return _convert(conv)


def dynamic(source: Path, calibration=None) -> bytes:
    """Dynamic-range quantization: int8 weights, float activations, no calibration."""
    conv = _converter(source)
    conv.optimizations = [tensorflow().lite.Optimize.DEFAULT]
    return _convert(conv)


def ptq_converter(source: Path, calibration, activations: int = 8):
    """A converter set up for full-integer post-training quantization with ``activations``-bit activations
    (8, or 16 for TFLite's 16x8 mode) and 8-bit weights, calibrated on ``calibration``."""
    tf = tensorflow()
    conv = _converter(source)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calibration
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if activations == 8 else
                                      tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv


def _full_integer(source: Path, io_type, calibration=None, activations: int = 8) -> bytes:
    """Every tensor integer, inputs and outputs of ``io_type``; ranges from ``calibration`` or from QAT."""
    tf = tensorflow()
    if calibration is not None:
        conv = ptq_converter(source, calibration, activations)
    else:
        conv = _converter(source)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = io_type
    conv.inference_output_type = io_type
    return _convert(conv)


def _corrected(model: bytes, calibration, bias_correction: Correction | None) -> bytes:
    return bias_correction.apply(model, calibration) if bias_correction else model


def int8(source: Path, calibration: Callable[[], Iterable] | None = None, *,
         bias_correction: Correction | None = None) -> bytes:
    """Full-integer post-training quantization of the float model, int8 input and output (CPU/XNNPACK); with
    ``bias_correction`` (``converters.bias_correction``) each weighted layer's bias absorbs its weights' mean error."""
    if calibration is None:
        raise EdgeAgeError("the int8 target needs calibration images")
    return _corrected(_full_integer(source, tensorflow().int8, calibration), calibration, bias_correction)


def int8_qat(source: Path, calibration=None) -> bytes:
    """Full integer from the QAT model (its fake-quant ranges), int8 input and output."""
    return _full_integer(source, tensorflow().int8)


def edgetpu(source: Path, calibration=None) -> bytes:
    """Full integer from the QAT model with uint8 input (raw 0..255 pixels) for the Edge TPU compiler."""
    return _full_integer(source, tensorflow().uint8)


def int16x8(source: Path, calibration: Callable[[], Iterable] | None = None, *,
            bias_correction: Correction | None = None) -> bytes:
    """TFLite's 16x8 mode: 16-bit activations, 8-bit weights, int16 input and output, calibrated like int8; with
    ``bias_correction`` (``converters.bias_correction``) each weighted layer's bias absorbs its weights' mean error.

    XNNPACK has no 16x8 kernels: LiteRT runs it on its reference kernels (tens of times slower than int8).
    """
    if calibration is None:
        raise EdgeAgeError("the int16x8 target needs calibration images")
    return _corrected(_full_integer(source, tensorflow().int16, calibration, activations=16), calibration,
                      bias_correction)


def int8_mixed(source: Path, calibration: Callable[[], Iterable] | None = None, *,
               search: Search | None = None) -> bytes:
    """PTQ int8 with the fewest layers kept in float that bring the MAE within a budget (selective quantization).

    ``search`` (``converters.mixed.Search``) scores candidate files and keeps its outcome: layers kept, steps.
    """
    if calibration is None:
        raise EdgeAgeError("the int8-mixed target needs calibration images")
    if search is None:
        raise EdgeAgeError("the int8-mixed target needs an accuracy budget and validation faces to search with")
    return search.run(source, calibration).model


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
    Target("int16x8", "float", True, "CPU (reference kernels; not XNNPACK, GPU or Edge TPU)", int16x8),
    Target("int8-mixed", "float", True, "CPU / XNNPACK", int8_mixed),
)}
DEFAULT_TARGETS = ("float32", "float16", "dynamic", "int8", "int8-qat", "edgetpu")  # the two slow ones on request
INTEGER_TARGETS = frozenset({"int8", "int8-qat", "edgetpu", "int16x8", "int8-mixed"})  # get the per-layer analysis
# 8-bit files whose age decoding convert --fit-decoding fits on their own outputs (int16x8's reference kernels are
# too slow to run over a validation side, and its outputs stay near the float model's)
DECODING_FIT_TARGETS = frozenset({"int8", "int8-qat", "edgetpu", "int8-mixed"})
CORRECTED_TARGETS = frozenset({"int8", "int16x8"})  # PTQ files that take a bias correction (--no-bias-correction)


def target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeAgeError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[name]
