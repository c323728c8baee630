"""A small real model with a planted quantization fault, and a split whose labels are its own float answers.

The fault: one output channel of the linear ``project`` convolution is scaled up ``SCALE`` times (and offset) and
the 1x1 depthwise ``inverse`` that reads it scales it back, so the float model is unchanged while int8 must
stretch that tensor's range over the one big channel and round the others to a few levels. Labels equal to the float
model's
rounded ages make any change of the answers cost MAE, so the damage is measurable in years.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PLANTED = "project"
SCALE = 1000.0


def build(path: Path):
    """Build (seeded, untrained but deterministic), plant the fault and save the model; return it."""
    from converters.tf_setup import keras
    k = keras()
    k.utils.set_random_seed(0)
    image = k.Input((32, 32, 3), name="image")
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6", name="stem")(image)
    x = k.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="depthwise")(x)
    x = k.layers.Conv2D(32, 1, name=PLANTED)(x)
    x = k.layers.DepthwiseConv2D(1, name="inverse")(x)
    x = k.layers.Conv2D(64, 1, activation="relu6", name="expand")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    age = k.layers.Dense(117, name="age", kernel_initializer=k.initializers.RandomNormal(stddev=30.0, seed=1))(x)
    gender = k.layers.Dense(1, activation="sigmoid", name="gender")(x)
    model = k.Model(image, {"age": age, "gender": gender}, name="planted")
    kernel, bias = model.get_layer(PLANTED).get_weights()
    kernel[..., 0] *= SCALE
    bias[0] = SCALE
    model.get_layer(PLANTED).set_weights([kernel, bias])
    kernel = np.ones((1, 1, 32, 1), np.float32)  # the inverse: channel 0 divided by SCALE and the offset removed
    kernel[0, 0, 0, 0] = 1 / SCALE
    bias = np.zeros(32, np.float32)
    bias[0] = -1.0
    model.get_layer("inverse").set_weights([kernel, bias])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return model


def own_answers_split(model, faces: Path, path: Path) -> Path:
    """A split of ``faces``: the first half trains (calibration), the rest is split between val and test, labelled
    with the model's own rounded float ages and gender decisions."""
    from edge_age.data.faceset import load_faces
    from edge_age.eval.evaluation import predict_keras
    found = load_faces(faces, size=32)
    ages, genders = predict_keras(model, np.asarray(found.images))
    n = len(found.names)
    lines = ["file,age,gender,race,group,split"]
    for i, name in enumerate(found.names):
        side = "train" if i < n // 2 else "val" if i < 3 * n // 4 else "test"
        lines.append(f"{name},{int(round(ages[i]))},{int(genders[i] >= 0.5)},0,{i},{side}")
    path.write_text("\n".join(lines) + "\n")
    return path
