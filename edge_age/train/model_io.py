"""Model I/O: load and save Keras models (float ``.keras``/``.h5``, QAT ``.h5``) and the ``device.json`` of facts
the runtime needs, saved beside a trained model. TensorFlow loads on first use."""
from __future__ import annotations

import warnings
from pathlib import Path

from converters.tf_setup import keras
from edge_age.train.models import ModelSpec, build_model, custom_objects
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import check_schema, read_json, write_json

DEVICE_FILE = "device.json"


def write_device_facts(run: Path, spec: ModelSpec, chip_resolution: int | None) -> Path:
    """What the runtime needs to feed and read the model, saved beside it (``device.json``) for every sidecar."""
    from firmware_host.infer.preprocess import COLOR_ORDER, PIXEL_OFFSET, PIXEL_SCALE
    facts = {"input_size": spec.input_size, "chip_resolution": chip_resolution, "color_order": COLOR_ORDER,
             "pixel_scale": PIXEL_SCALE, "pixel_offset": PIXEL_OFFSET, "ages": [0, spec.max_age],
             "age_decode": "softmax_expectation" if spec.head == "ldl" else "value",
             "gender_decode": "sigmoid_probability"}
    return write_json(Path(run) / DEVICE_FILE, facts)


def read_device_facts(model: Path) -> dict:
    """The ``device.json`` saved beside a model when it was trained, or ``{}`` for a run made before it existed;
    its ``age_decoding`` checked as a sidecar's."""
    from firmware_host.infer.model_info import SCHEMA_FILE, check_age_decoding
    path = Path(model).parent / DEVICE_FILE
    if not path.is_file():
        return {}
    facts = read_json(path, "device facts")
    res = facts.get("chip_resolution") if isinstance(facts, dict) else None
    if not isinstance(facts, dict) or not (res is None or (isinstance(res, int) and 8 <= res <= 4096)):
        raise EdgeAgeError(f"{path}: chip_resolution must be a whole number of pixels in 8..4096")
    check_schema(facts, SCHEMA_FILE, path, definition="device_facts")
    check_age_decoding(facts.get("age_decoding"), path)
    return facts


def write_age_decoding(model: Path, decoding: dict) -> Path:
    """Put ``decoding`` into the ``device.json`` beside ``model`` (made if there is none)."""
    facts = read_device_facts(model)
    return write_json(Path(model).parent / DEVICE_FILE, {**facts, "age_decoding": decoding})


def quantize(model):
    """A quantization-aware copy of a float model."""
    keras()  # TensorFlow first, quietly: tfmot imports it too
    import tensorflow_model_optimization as tfmot
    return tfmot.quantization.keras.quantize_model(model)


def save_model(model, path: Path) -> Path:
    """Save graph and weights without optimizer state, atomically (``.h5`` for QAT models: ``.keras`` does not
    reload)."""
    with atomic.atomic_path(path) as tmp:
        if path.suffix == ".h5":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "HDF5 is legacy": it is the format a QAT model reloads from
                model.save(str(tmp), include_optimizer=False)
        else:
            clean = keras().models.clone_model(model)
            clean.set_weights(model.get_weights())
            clean.save(str(tmp))
    return path


def load_model(path: str | Path):
    """A float ``.keras``/``.h5`` or a QAT ``.h5`` model, uncompiled."""
    k = keras()  # TensorFlow first, quietly: tfmot imports it too
    import tensorflow_model_optimization as tfmot
    path = Path(path)
    if not path.is_file():
        raise EdgeAgeError(f"model file {path} does not exist")
    try:
        with tfmot.quantization.keras.quantize_scope(), k.utils.custom_object_scope(custom_objects()):
            return k.models.load_model(str(path), compile=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeAgeError(f"{path} is not a readable Keras model: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None


def is_trained_model(weights: str | Path | None) -> bool:
    """Whether ``weights`` names a trained model (``.keras``) rather than an ImageNet backbone (``.h5``) or nothing."""
    return weights is not None and Path(weights).suffix == ".keras"


def start_model(spec: ModelSpec, weights: str | Path | None = None):
    """The model to train: ``build_model``'s, from an ImageNet no-top ``.h5`` (the backbone), or from a trained model
    (``.keras``) of the same architecture, every layer (any input size: the layers are convolutional), or from
    scratch (None); a one-line error when the trained model's layers differ."""
    if not is_trained_model(weights):
        return build_model(spec, weights)
    model, trained = build_model(spec), load_model(weights)
    if [w.shape for w in trained.get_weights()] != [w.shape for w in model.get_weights()]:
        raise EdgeAgeError(f"{Path(weights).name} does not fit {model.name}: its layers or widths differ "
                           f"({trained.count_params():,} parameters against {model.count_params():,})")
    model.set_weights(trained.get_weights())
    return model
