"""Model sidecars written and read back on a stand-in file: the schema's one-line errors name the field."""
import json

import pytest

from firmware_host.errors import EdgeAgeError
from firmware_host.infer.model_info import ModelInfo, Output, read_info, write_info


def _info() -> ModelInfo:
    return ModelInfo(target="int8", input_size=32, color_order="RGB", pixel_scale=1 / 127.5, pixel_offset=-1.0,
                     input_dtype="int8", input_quantization=[1 / 127.5, 0],
                     outputs={"age": Output("age", [1, 117], "softmax_expectation", ages=[0, 116]),
                              "gender": Output("gender", [1, 1], "sigmoid_probability", positive="female")},
                     source_model="model.keras", source_sha256="0" * 64, toolkit_version="0")


def test_a_sidecar_reads_back_as_written(tmp_path):
    model = tmp_path / "m.tflite"
    write_info(model, _info())
    assert read_info(model) == _info()


@pytest.mark.parametrize("change, fragment", [
    ({"input_size": 1e9}, "input_size: must be at most 4096"),
    ({"input_size": "32"}, "input_size: must be of type integer"),
    ({"format": 99}, "is not"),
])
def test_bad_sidecars_name_the_field(tmp_path, change, fragment):
    model = tmp_path / "m.tflite"
    path = write_info(model, _info())
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(EdgeAgeError) as caught:
        read_info(model)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_sidecar_says_what_writes_it(tmp_path):
    with pytest.raises(EdgeAgeError, match="edge-age convert"):
        read_info(tmp_path / "m.tflite")
