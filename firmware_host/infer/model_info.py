"""What a device needs to know about a ``.tflite`` file, from its JSON sidecar (same stem).

The converter writes it; the runtime holds no constants of its own about a model. Every sidecar is
checked against ``model_info.schema.json`` (types, ranges, finite numbers), its ``age_decoding`` against
what a schema cannot say (:func:`check_age_decoding`), and, where the model is loaded, against the model
itself (:func:`check_model`: input, output names and shapes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files.jsonio import check_schema, read_json, write_json
from firmware_host.infer.postprocess import VALUE, AgeDecoding

FORMAT = 1
SCHEMA_FILE = Path(__file__).with_name("model_info.schema.json")


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
    age_decoding: dict | None = None  # mean or median, and the monotone correction (None: the mean, as it is)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["age_decoding"] is None:
            del d["age_decoding"]
        return d

    @property
    def decoding(self) -> AgeDecoding:
        return AgeDecoding.from_dict(self.age_decoding)

    @classmethod
    def from_dict(cls, d: dict) -> ModelInfo:
        """From a dict that passed the schema check."""
        return cls(**{**d, "input_size": int(d["input_size"]), "outputs": {k: Output(**v) for k,
                                                                           v in d["outputs"].items()}})


def sidecar_path(model: str | Path) -> Path:
    return Path(model).with_suffix(".json")


def write_info(model: str | Path, info: ModelInfo) -> Path:
    return write_json(sidecar_path(model), info.to_dict())


def read_info(model: str | Path) -> ModelInfo:
    """The sidecar of ``model``, checked against the schema; a one-line error naming the field otherwise."""
    if Path(model).is_dir():
        raise EdgeAgeError(f"model {model} is a folder: give its .tflite file")
    path = sidecar_path(model)
    if not path.is_file():
        raise EdgeAgeError(f"{path} is missing: the model needs the metadata file 'edge-age convert' writes beside it")
    data = read_json(path, "model metadata")
    if isinstance(data, dict) and data.get("format") not in (FORMAT, None):
        raise EdgeAgeError(f"{path}: model metadata format {data['format']!r} is not {FORMAT}: convert the model again")
    check_schema(data, SCHEMA_FILE, path)
    check_age_decoding(data.get("age_decoding"), path)
    if data["outputs"]["age"]["decode"] == VALUE and (data.get("age_decoding") or {}).get("method") == "median":
        raise EdgeAgeError(f"{path}: age_decoding.method: a 'value' age output has no distribution to take the "
                           "median of")
    return ModelInfo.from_dict(data)


def check_age_decoding(decoding: dict | None, where: str | Path) -> None:
    """What the schema cannot say of an ``age_decoding`` that passed it: x and y have as many knots, x ascends,
    y never decreases; a one-line error naming the file ``where`` otherwise."""
    correction = (decoding or {}).get("correction")
    if not correction:
        return
    x, y = correction["x"], correction["y"]
    if len(x) != len(y):
        raise EdgeAgeError(f"{where}: age_decoding.correction: x has {len(x)} knots, y {len(y)}: one y per x")
    for name, values, bad, rule in (("x", x, lambda a, b: b <= a, "ascend strictly"),
                                    ("y", y, lambda a, b: b < a, "never decrease (a monotone map)")):
        i = next((i for i in range(1, len(values)) if bad(values[i - 1], values[i])), None)
        if i is not None:
            raise EdgeAgeError(f"{where}: age_decoding.correction.{name}: must {rule}, not {values[i]} after "
                               f"{values[i - 1]} (knot {i})")


def sidecar_decoding(model: str | Path) -> AgeDecoding:
    """The age decoding in the sidecar beside ``model``, checked; the mean, uncorrected, for a file without one."""
    return read_info(model).decoding if sidecar_path(model).is_file() else AgeDecoding()


def write_age_decoding(model: str | Path, decoding: dict | None) -> Path:
    """Put ``decoding`` into the (valid) sidecar of ``model``, or take it out (None)."""
    info = read_info(model)
    info.age_decoding = decoding
    return write_info(model, info)


def signature_runner(interpreter, model: str | Path):
    """The model's one signature runner; a file without exactly one (another task's model) is refused."""
    try:
        return interpreter.get_signature_runner()
    except ValueError:
        raise EdgeAgeError(f"{model} has no single signature: it is not an edge-age age/gender model") from None


def check_model(info: ModelInfo, interpreter, model: str | Path) -> None:
    """Refuse a sidecar that does not describe the model it sits beside (another task's ``.tflite``, a
    copied or edited sidecar): one input of ``input_size`` pixels, the named outputs with their shapes."""
    where = sidecar_path(model)
    runner = signature_runner(interpreter, model)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    shapes = [tuple(int(d) for d in v["shape"]) for v in inputs.values()]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][1:] != (info.input_size, info.input_size, 3):
        raise EdgeAgeError(f"{where}: input_size: {info.input_size} does not match the model's input "
                           f"{shapes}: not the model this metadata describes")
    dtype = np.dtype(next(iter(inputs.values()))["dtype"]).name
    if dtype != info.input_dtype:
        raise EdgeAgeError(f"{where}: input_dtype: {info.input_dtype} does not match the model's input ({dtype})")
    for key, out in info.outputs.items():
        if out.name not in outputs:
            raise EdgeAgeError(f"{where}: outputs.{key}.name: {out.name!r} is not an output of {model} "
                               f"(its outputs: {', '.join(sorted(outputs))})")
        shape = [int(d) for d in outputs[out.name]["shape"]]
        if shape[1:] != out.shape[1:]:
            raise EdgeAgeError(f"{where}: outputs.{key}.shape: {out.shape} does not match the model's {shape}")
    _check_decoding(info, where)


def _check_decoding(info: ModelInfo, where: Path) -> None:
    """The decoding each output names fits its width (one age per logit, one value, one probability)."""
    age, gender = info.outputs["age"], info.outputs["gender"]
    if age.decode == "softmax_expectation":
        first, last = age.ages or [0, age.shape[-1] - 1]
        if last - first + 1 != age.shape[-1]:
            raise EdgeAgeError(f"{where}: outputs.age.ages: {age.ages} is not one age per logit "
                               f"({age.shape[-1]} logits)")
    elif age.shape[-1] != 1:
        raise EdgeAgeError(f"{where}: outputs.age.shape: a 'value' output has one column, not {age.shape[-1]}")
    if gender.shape[-1] != 1:
        raise EdgeAgeError(f"{where}: outputs.gender.shape: a probability has one column, not {gender.shape[-1]}")
