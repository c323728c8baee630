"""What a device needs to know about a ``.tflite`` file, from its JSON sidecar (same stem).

The converter writes it; the runtime holds no constants of its own about a model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from firmware_host import atomic
from firmware_host.errors import EdgeAgeError

FORMAT = 1


@dataclass
class Output:
    """One output of the signature: ``decode`` says how to read it."""

    name: str
    shape: list[int]
    decode: str  # "softmax_expectation" (logits over ages min..max), "value" (age in years), "sigmoid_probability"
    ages: list[int] | None = None  # [min, max] for softmax_expectation
    positive: str | None = None    # the class a probability of 1 means (gender: "female")


@dataclass
class ModelInfo:
    target: str
    input_size: int
    color_order: str
    pixel_scale: float
    pixel_offset: float
    input_dtype: str
    input_quantization: list[float] | None  # [scale, zero_point] of the input tensor, if quantized
    outputs: dict[str, Output]
    source_model: str
    source_sha256: str
    toolkit_version: str
    extra: dict = field(default_factory=dict)
    format: int = FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelInfo":
        if d.get("format") != FORMAT:
            raise EdgeAgeError(f"model metadata format {d.get('format')!r} is not {FORMAT}: convert the model again")
        return cls(**{**d, "outputs": {k: Output(**v) for k, v in d["outputs"].items()}})


def sidecar_path(model: str | Path) -> Path:
    return Path(model).with_suffix(".json")


def write_info(model: str | Path, info: ModelInfo) -> Path:
    return atomic.write_text(sidecar_path(model), json.dumps(info.to_dict(), indent=1))


def read_info(model: str | Path) -> ModelInfo:
    """The sidecar of ``model``, with a clear error when it is missing or not ours."""
    path = sidecar_path(model)
    try:
        return ModelInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise EdgeAgeError(f"{path} is missing: the model needs the metadata file 'edge-age convert' writes beside it") from None
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise EdgeAgeError(f"{path} is not edge-age model metadata: {exc}") from None
