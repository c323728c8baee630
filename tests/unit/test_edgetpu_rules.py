"""Edge TPU rules on tiny synthetic int8 graphs (converted, never trained): static batch 1, static sizes,
no run-time shapes, 1-D fully connected outputs."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from converters.edgetpu import (
    AFTER_CUT,
    BATCH,
    DYNAMIC,
    NOT_1D,
    NOT_SUPPORTED,
    check,
)


def _tiny_int8(path, shape, batch=None, dense_on_rows=False):
    """A small full-int8 (post-training quantized) graph with the given input shape."""
    from converters.sources import export_saved_model
    from converters.targets import target
    from converters.tf_setup import keras
    k = keras()
    image = k.Input(shape, batch_size=batch)
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = k.layers.Reshape((-1, 4))(x) if dense_on_rows else k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(image, k.layers.Dense(2)(x))
    sample = (batch or 1, *(d or 8 for d in shape))

    def calibration():
        rng = np.random.default_rng(0)
        return ([rng.uniform(-1, 1, sample).astype("float32")] for _ in range(4))

    source = export_saved_model(model, path.with_suffix(".source"))
    path.write_bytes(target("int8").build(source, calibration))
    return path


def test_batch_two_is_flagged(tmp_path):
    result = check(_tiny_int8(tmp_path / "batch2.tflite", (8, 8, 3), batch=2))
    assert result.first_unmapped == 0
    assert result.ops[0].reason == BATCH and "batch size 2" in result.ops[0].detail


def test_dynamic_size_is_flagged(tmp_path):
    result = check(_tiny_int8(tmp_path / "dynamic.tflite", (None, None, 3)))
    assert result.first_unmapped == 0
    assert result.ops[0].reason == DYNAMIC and "-1" in result.ops[0].detail


def test_dynamic_batch_through_a_reshape_is_flagged(tmp_path):
    """A -1 batch is harmless alone, but a Reshape over it computes shapes at run time."""
    result = check(_tiny_int8(tmp_path / "rows.tflite", (4, 4, 3), dense_on_rows=True))
    assert result.ops[0].name == "CONV_2D" and result.ops[0].supported
    assert result.first_unmapped == 1
    assert result.ops[1].name == "SHAPE" and result.ops[1].reason == NOT_SUPPORTED
    assert not result.all_mapped


def test_fully_connected_with_2d_output_is_flagged(tmp_path):
    result = check(_tiny_int8(tmp_path / "rows1.tflite", (4, 4, 3), batch=1, dense_on_rows=True))
    assert [op.name for op in result.ops] == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE"]
    assert result.first_unmapped == 1
    assert result.ops[1].reason == NOT_1D and "[1, 4, 4, 2]" in result.ops[1].detail
    assert result.status(result.ops[2]) == AFTER_CUT
