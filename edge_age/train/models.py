"""Flat two-head MobileNets (tf_keras): age logits over 0..MAX_AGE and a gender sigmoid.

Flat means the backbone's layers sit in the same graph as the heads, which
``tfmot.quantization.keras.quantize_model`` requires. Pixel scaling stays outside
the graph (``firmware_host.infer.preprocess``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from converters.tf_setup import keras, tensorflow
from edge_age.data.names import MAX_AGE
from firmware_host.errors import EdgeAgeError

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"  # edge_age/reference
ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
HEADS = ("ldl", "regression")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's graph."""

    arch: str = "mobilenet_v2"
    alpha: float = 0.35
    input_size: int = 96
    head: str = "ldl"
    minimalistic: bool = False
    dropout: float = 0.2
    max_age: int = MAX_AGE
    bn_momentum: float = 0.99  # Keras' MobileNets use 0.999: validation then lags training by thousands of steps
    cut: str = ""  # the backbone layer the network ends at, pooled (e.g. block_13_expand_relu); "": all of it

    def check(self) -> ModelSpec:
        if self.arch not in ARCHITECTURES:
            raise EdgeAgeError(f"unknown architecture {self.arch!r}; choose from {', '.join(ARCHITECTURES)}")
        if self.head not in HEADS:
            raise EdgeAgeError(f"unknown age head {self.head!r}; choose from {', '.join(HEADS)}")
        if not 32 <= self.input_size <= 512:
            raise EdgeAgeError(f"input size {self.input_size} outside 32..512")
        if self.arch == "mobilenet_v2" and self.alpha not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
            raise EdgeAgeError(f"MobileNetV2 alpha must be one of 0.35, 0.5, 0.75, 1.0, 1.3, 1.4, not {self.alpha}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The backbone in a few words, e.g. 'mobilenet_v2 alpha 1.0 cut at block_13_expand_relu'."""
        return f"{self.arch} alpha {self.alpha}" + (f" cut at {self.cut}" if self.cut else "")


def _backbone(spec: ModelSpec, image):
    k = keras()
    common = dict(input_tensor=image, include_top=False, pooling="avg", alpha=spec.alpha, weights=None)
    if spec.arch == "mobilenet_v2":
        return k.applications.MobileNetV2(**common)
    build = k.applications.MobileNetV3Small if spec.arch == "mobilenet_v3_small" else k.applications.MobileNetV3Large
    return build(**common, minimalistic=spec.minimalistic, include_preprocessing=False)


def build_model(spec: ModelSpec, weights: str | Path | None = None):
    """The two-head model; ``weights`` is an ImageNet no-top ``.h5`` for the backbone, or None (a trained model to
    start from: ``model_io.start_model``)."""
    k = keras()
    spec.check()
    image = k.Input((spec.input_size, spec.input_size, 3), name="image")
    backbone = _backbone(spec, image)
    if weights:
        load_backbone_weights(backbone, weights)
    for layer in backbone.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = spec.bn_momentum
    features = backbone.output
    if spec.cut:
        features = k.layers.GlobalAveragePooling2D(name="cut_pool")(_layer(backbone, spec.cut).output)
    x = k.layers.Dropout(spec.dropout, name="head_dropout")(features)
    units = spec.max_age + 1 if spec.head == "ldl" else 1
    age = k.layers.Dense(units, name="age")(x)
    gender = k.layers.Dense(1, activation="sigmoid", name="gender")(x)
    return k.Model(image, {"age": age, "gender": gender}, name=f"{spec.arch}_age_gender")


def _layer(backbone, name: str):
    """The backbone's layer ``name``, with the names it has when there is none."""
    try:
        return backbone.get_layer(name)
    except ValueError:
        ends = [layer.name for layer in backbone.layers if layer.name.endswith(("_relu", "_add"))]
        examples = ", ".join(ends[-12::3])
        raise EdgeAgeError(f"no layer {name!r} to cut {backbone.name} at; for example {examples}") from None


def load_backbone_weights(backbone, path: str | Path) -> None:
    """Load ImageNet weights into the backbone, with a clear error when they do not fit."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAgeError(f"weights file {path} does not exist")
    try:
        backbone.load_weights(str(path))
    except (ValueError, OSError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeAgeError(f"weights {path.name} do not fit {backbone.name} "
                           f"(another architecture or width?): {first[:200]}") from None


def _custom_layers():
    """Layers of ensemble models (the teacher), registered with tf_keras once."""
    k, tf = keras(), tensorflow()
    if hasattr(_custom_layers, "cache"):
        return _custom_layers.cache

    @k.utils.register_keras_serializable(package="edge_age")
    class MirrorFaces(k.layers.Layer):
        """Flip a batch of faces left to right."""

        def call(self, x):
            return tf.reverse(x, axis=[2])

    @k.utils.register_keras_serializable(package="edge_age")
    class AverageAgeLogits(k.layers.Layer):
        """log(mean softmax) of several age logits: the ensemble's age distribution as logits."""

        def call(self, logits):
            probs = tf.reduce_mean(tf.stack([tf.nn.softmax(z) for z in logits], axis=0), axis=0)
            return tf.math.log(probs + 1e-12)

    _custom_layers.cache = {"MirrorFaces": MirrorFaces, "AverageAgeLogits": AverageAgeLogits}
    return _custom_layers.cache


def custom_objects() -> dict:
    """What ``load_model`` needs to read any edge-age Keras file."""
    return dict(_custom_layers())


def reference_model(kind: str = "float") -> Path:
    """The bundled reference model: ``float`` (``model.keras``) or ``qat`` (``qat.h5``)."""
    path = REFERENCE_DIR / {"float": "model.keras", "qat": "qat.h5"}[kind]
    if not path.is_file():
        raise EdgeAgeError(f"the bundled reference model {path.name} is missing from {REFERENCE_DIR}: run 'make "
                           "reference'")
    return path
