"""Bias correction of int8 and int16x8 files (converters.bias_correction) on the bundled reference model and real
faces: the corrected file is closer to the float file than the plain one, and a float file of another model is
refused."""
import numpy as np
import pytest

from converters.bias_correction import BiasCorrection, correct_biases
from converters.sources import export_saved_model
from converters.targets import float32, int8, int16x8
from converters.tf_setup import keras as tf_keras
from edge_age.data.faceset import load_faces
from edge_age.members import member
from edge_age.train.model_io import load_model
from edge_age.train.models import reference_model
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.predictor import predict_tflite
from firmware_host.infer.preprocess import normalize

CALIBRATION = 40  # of the 160 faces; the next ones are the faces the files are compared on
COMPARED = 48


@pytest.fixture(scope="module")
def reference_files(faces, tmp_path_factory):
    """The reference model's float32 file, its int8 and int16x8 files without correction and the faces (96 px)."""
    folder = tmp_path_factory.mktemp("bias_correction")
    model = load_model(reference_model("float"))
    size = int(model.input_shape[1])
    images = np.asarray(load_faces(faces, size=size).images)
    calibration = images[:CALIBRATION]

    def representative():
        for image in calibration:
            yield [normalize(image[None])]

    source = export_saved_model(model, folder / "source")
    (folder / "float32.tflite").write_bytes(float32(source))
    (folder / "int8.tflite").write_bytes(int8(source, representative))
    (folder / "int16x8.tflite").write_bytes(int16x8(source, representative))
    return folder, representative, images[CALIBRATION:CALIBRATION + COMPARED]


@pytest.mark.parametrize("target", ["int8", "int16x8"])
def test_bias_correction_brings_the_file_closer_to_float(reference_files, target):
    folder, representative, images = reference_files
    correction = BiasCorrection(folder / "float32.tflite")
    corrected = correction.apply((folder / f"{target}.tflite").read_bytes(), representative)
    (folder / f"{target}_corrected.tflite").write_bytes(corrected)
    report = correction.to_dict()
    # MobileNetV2: 35 convolutions, 17 depthwise, 2 dense heads; every one has int8 weights and a bias
    assert report["applied"] and report["layers"] == report["weighted_layers"] > 40, report
    reference_age = predict_tflite(folder / "float32.tflite", images)[0]
    gap = {name: float(np.mean(np.abs(predict_tflite(folder / f"{name}.tflite", images)[0] - reference_age)))
           for name in (target, f"{target}_corrected")}
    assert gap[f"{target}_corrected"] < 0.6 * gap[target], gap


def test_a_float_file_of_another_model_is_refused(reference_files, tmp_path):
    folder, representative, _ = reference_files
    keras = tf_keras()
    inputs = keras.Input((96, 96, 3))
    small = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(8, 3)(inputs))))
    other = float32(export_saved_model(small, tmp_path / "small"))
    with pytest.raises(EdgeAgeError, match="the float file is not the quantized file's source") as caught:
        correct_biases((folder / "int16x8.tflite").read_bytes(), other, (sample[0] for sample in representative()))
    assert "\n" not in str(caught.value)


def test_a_quantized_file_is_no_float_reference(reference_files):
    """A bundled member's int8-qat file: the same MobileNetV2 layers, weights in int8."""
    folder, representative, _ = reference_files
    with pytest.raises(EdgeAgeError, match="does not hold float32 weights: not a float32 file"):
        correct_biases((folder / "int16x8.tflite").read_bytes(), member("m").tflite("int8-qat").read_bytes(),
                       (sample[0] for sample in representative()))
