"""Model sidecars written and read back on a stand-in file: the schema's one-line errors name the field."""
import json

import pytest

from firmware_host.errors import EdgeAgeError
from firmware_host.infer.model_info import ModelInfo, Output, read_info, write_age_decoding, write_info


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


DECODING = {"method": "median", "correction": {"x": [10.0, 30.0, 60.0], "y": [12.0, 30.5, 58.0]},
            "fit": {"side": "val", "faces": 300, "val_mae": {"mean": 6.1, "median": 6.0, "corrected": 5.8}}}


def test_an_age_decoding_reads_back_and_old_sidecars_decode_as_the_mean(tmp_path):
    model = tmp_path / "m.tflite"
    write_info(model, _info())
    assert "age_decoding" not in json.loads(model.with_suffix(".json").read_text())
    assert read_info(model).decoding.method == "mean" and read_info(model).decoding.x == ()
    write_age_decoding(model, DECODING)
    decoding = read_info(model).decoding
    assert decoding.method == "median" and decoding.x == (10.0, 30.0, 60.0) and decoding.y == (12.0, 30.5, 58.0)
    assert not decoding.mirror and decoding.runs_per_face == 1
    write_age_decoding(model, {**DECODING, "mirror": True})
    decoding = read_info(model).decoding
    assert decoding.mirror and decoding.runs_per_face == 2 and decoding.describe().endswith(", mirror-averaged")


@pytest.mark.parametrize("text, fragment", [
    ('"x": [10.0, 60.0, 30.0]', "age_decoding.correction.x: must ascend strictly, not 30.0 after 60.0"),
    ('"x": [10.0, 30.0, 30.0]', "age_decoding.correction.x: must ascend strictly"),
    ('"y": [12.0, 30.5, 28.0]', "age_decoding.correction.y: must never decrease"),
    ('"y": [12.0, NaN, 58.0]', "age_decoding.correction.y.1: must be a finite number"),
    ('"x": [10.0, 30.0, 60.0, 70.0]', "x has 4 knots, y 3"),
    ('"x": [10.0]', "age_decoding.correction.x: must have at least 2 items"),
    ('"method": "mode"', "age_decoding.method: must be one of mean, median"),
    ('"method": "median", "mirror": "yes"', "age_decoding.mirror: must be of type boolean"),
    ('"side": "test"', "age_decoding.fit.side"),
])
def test_bad_age_decodings_name_the_file_and_field(tmp_path, text, fragment):
    model = tmp_path / "m.tflite"
    write_info(model, _info())
    write_age_decoding(model, DECODING)
    path = model.with_suffix(".json")
    key = text.split(":")[0]
    data = path.read_text()
    start = data.index(key + ": ")
    end = data.index("]", start) + 1 if data[start + len(key) + 2] == "[" else data.index(",", start)
    path.write_text(data[:start] + text + data[end:])
    with pytest.raises(EdgeAgeError) as caught:
        read_info(model)
    assert str(caught.value).startswith(str(path)) and fragment in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_median_of_a_value_output_is_refused(tmp_path):
    model = tmp_path / "m.tflite"
    info = _info()
    info.outputs["age"] = Output("age", [1, 1], "value")
    info.age_decoding = DECODING
    write_info(model, info)
    with pytest.raises(EdgeAgeError, match="no distribution to take the median of"):
        read_info(model)
