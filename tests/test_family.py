"""The bundled family: listed, addressable by name in every command, and carrying what the device needs."""
import json
from pathlib import Path

import pytest

from firmware_host.infer.model_info import read_info
from tests.conftest import ROOT, UTK64, UTK200, assert_user_error, copy_slice, run_cli, sample_names

PREPROCESSING = ("input_size", "color_order", "pixel_scale", "pixel_offset", "input_dtype", "input_quantization")


@pytest.fixture(scope="module")
def family() -> list[dict]:
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_models_json_has_the_documented_shape_and_real_paths(family):
    from edge_age.members import DEFAULT_MEMBER
    names = [m["name"] for m in family]
    assert len(names) >= 3 and DEFAULT_MEMBER in names
    assert [m["name"] for m in family if m["default"] is True] == [DEFAULT_MEMBER]
    for m in family:
        assert {"name", "files", "arch", "input_size", "params", "macs", "targets"} <= set(m)
        assert {"int8-qat", "edgetpu"} <= set(m["files"])
        for target, path in m["files"].items():
            assert Path(path).is_absolute() and Path(path).is_file(), path
            assert read_info(path).target == target
        assert m["targets"]["int8-qat"]["mae"] > 0 and m["params"] > 100_000 and m["macs"] > m["params"]


def test_models_table_lists_every_member(family):
    proc = run_cli("models")
    assert proc.returncode == 0, proc.stderr
    for m in family:
        assert f"| {m['name']}" in proc.stdout


@pytest.fixture(scope="module")
def few_faces(tmp_path_factory):
    return copy_slice(UTK64, tmp_path_factory.mktemp("few"), sample_names(UTK64, 40))


def test_a_member_name_works_in_evaluate_and_bench(family, few_faces, tmp_path):
    name = family[-1]["name"]
    proc = run_cli("evaluate", name, "--data", few_faces)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "age_gender_int8-qat.tflite: n=40" in proc.stdout
    proc = run_cli("bench", name, "--runs", "5", "--warmup", "1", "--rounds", "1", "--out", tmp_path / "bench")
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert [m["file"] for m in bench["models"]] == [family[-1]["files"]["int8-qat"]]


def test_a_member_name_works_in_run_and_predict(family, tmp_path):
    photos = tmp_path / "photos"
    proc = run_cli("data", "photos", UTK200, "--count", "3", "--out", photos)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("run", "-m", family[-1]["name"], "--source", photos, "--detector", "haar", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "run_report.json").read_text())
    assert report["model"] == family[-1]["files"]["int8-qat"] and report["frames"] == 3
    proc = run_cli("predict", photos, "--detector", "haar", "--out", tmp_path / "pred")  # the default member
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "pred" / "faces.csv").is_file()


def test_a_member_name_works_in_convert(tmp_path):
    """s's member.json points at its Keras models in this clone's runs/members/s (an installed package has no
    runs/: tests/test_wheel.py); convert finds the float model by the name."""
    proc = run_cli("convert", "s", "--targets", "float32", "--out", tmp_path / "conv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "conv" / "convert_report.json").read_text())
    assert Path(report["float_model"]).resolve() == (ROOT / "runs" / "members" / "s" / "model.keras").resolve()
    converted = read_info(tmp_path / "conv" / "age_gender_float32.tflite")
    bundled = read_info(ROOT / "edge_age" / "family" / "s" / "age_gender_int8-qat.tflite")
    assert converted.input_size == bundled.input_size == 96
    assert converted.extra["chip_resolution"] == 64


def test_an_unknown_name_lists_the_members(family):
    proc = run_cli("run", "-m", "xl", "--source", "0")
    assert_user_error(proc, "'xl'", *(m["name"] for m in family))


def test_sidecars_without_data_carry_the_same_preprocessing(converted_without_data, converted):
    """`convert` without --data reads the chip resolution saved with the model at training time."""
    for target in ("int8-qat", "float32"):
        with_data = read_info(converted / f"age_gender_{target}.tflite").to_dict()
        without = read_info(converted_without_data / f"age_gender_{target}.tflite").to_dict()
        for key in PREPROCESSING:
            assert without[key] == with_data[key], key
        assert without["extra"]["chip_resolution"] == with_data["extra"]["chip_resolution"] == 64
        assert without["outputs"] == with_data["outputs"]
