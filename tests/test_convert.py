"""`edge-age convert` on a tiny trained model and real faces: files, purity, sidecars, reports, refusals."""
import json
import shutil

import numpy as np
import pytest

from converters.targets import DEFAULT_TARGETS
from edge_age.members import member
from firmware_host.infer.graph import integer_only, io_types, read_ops
from firmware_host.infer.model_info import read_info
from tests.conftest import UTK64, assert_user_error, copy_slice, run_cli, sample_names


def test_every_target_is_built_and_reported(converted):
    report = json.loads((converted / "convert_report.json").read_text())
    assert [r["target"] for r in report["targets"]] == list(DEFAULT_TARGETS)
    assert all(r["status"] == "ok" for r in report["targets"])
    md = (converted / "convert_report.md").read_text()
    for name in DEFAULT_TARGETS:
        assert (converted / f"age_gender_{name}.tflite").stat().st_size > 10_000
        assert f"| {name} | ok |" in md
    for row in report["targets"]:
        d = row["details"]
        assert {"size_kb", "ops", "mae", "cs5", "gender_accuracy", "mean_abs_age_diff", "latency_ms_p50"} <= set(d)
    assert "Edge TPU compatibility" in md


@pytest.mark.parametrize("name, dtype", [("int8", "int8"), ("int8-qat", "int8"), ("edgetpu", "uint8")])
def test_integer_files_are_pure(converted, name, dtype):
    path = converted / f"age_gender_{name}.tflite"
    assert integer_only(read_ops(path))
    inputs, outputs = io_types(path)
    assert inputs[0].dtype == dtype and inputs[0].shape == (1, 32, 32, 3)
    assert {o.dtype for o in outputs} == {dtype}


def test_float_files_are_float(converted):
    for name in ("float32", "float16", "dynamic"):
        path = converted / f"age_gender_{name}.tflite"
        assert not integer_only(read_ops(path))
        assert io_types(path)[0][0].dtype == "float32"


def test_edgetpu_file_maps_fully(converted):
    report = json.loads((converted / "convert_report.json").read_text())
    row = next(r for r in report["targets"] if r["target"] == "edgetpu")
    assert row["details"]["edgetpu"]["all_mapped"] is True
    assert "edgetpu_compiler" in row["details"]["edgetpu_compiler"]["command"]


def test_sidecar_round_trips_and_describes_the_file(converted):
    for name in DEFAULT_TARGETS:
        path = converted / f"age_gender_{name}.tflite"
        info = read_info(path)
        assert info.to_dict() == json.loads(path.with_suffix(".json").read_text())
        assert info.input_size == 32 and info.color_order == "RGB" and info.target == name
        assert info.outputs["age"].decode == "softmax_expectation" and info.outputs["age"].ages == [0, 116]
        assert info.outputs["gender"].positive == "female"
        inputs, _ = io_types(path)
        if inputs[0].scale:
            assert info.input_quantization == pytest.approx([inputs[0].scale, inputs[0].zero_point])
        else:
            assert info.input_quantization is None


def test_validation_matches_an_independent_run(converted, tiny_run, faces, split):
    """The report's int8 MAE equals `edge-age evaluate` of the written file."""
    report = json.loads((converted / "convert_report.json").read_text())
    row = next(r for r in report["targets"] if r["target"] == "int8")
    proc = run_cli("evaluate", converted / "age_gender_int8.tflite", "--data", faces, "--split", split)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"MAE {row['details']['mae']:.2f}" in proc.stdout


def test_delta_age_is_each_file_against_the_keras_model_it_came_from(converted, tiny_run, faces, split):
    """|Δage|, one definition: the mean over the validation faces of |age from the file − age from its Keras
    source model|, recomputed here from the written files; the workbench's figure against the float reference file
    has a name of its own."""
    from edge_age.conversion import _faces
    from edge_age.data.split import read_split
    from edge_age.eval.evaluation import predict_keras
    from edge_age.train.model_io import load_model
    from firmware_host.infer.predictor import predict_tflite
    report = json.loads((converted / "convert_report.json").read_text())
    validation = _faces(faces, read_split(split).side("test"), 32, "test split")
    keras = {kind: predict_keras(load_model(tiny_run / name), validation.images)[0]
             for kind, name in (("float", "model.keras"), ("qat", "qat.h5"))}
    for row in report["targets"]:
        d = row["details"]
        ages = predict_tflite(converted / row["file"], validation.images)[0]
        assert d["mean_abs_age_diff"] == pytest.approx(np.mean(np.abs(ages - keras[d["source"]])), abs=1e-4), row
        if "output" in d:
            assert {"mean_quantization_error", "max_quantization_error"} <= set(d["output"])
    page = (converted / "convert_report.html").read_text()
    assert "<th>|Δage|</th>" in page and "|Δage|: the mean over the validation faces" in page
    assert "mean |Δage|" not in page and "age error from quantization, mean" in page


@pytest.fixture()
def black_calibration(tmp_path):
    """Real faces plus one black frame, and a split that calibrates on the black frame only."""
    import cv2
    names = sample_names(UTK64, 60)
    folder = copy_slice(UTK64, tmp_path / "faces", names)
    black = "30_0_0_20990101000000000.jpg.chip.jpg"
    cv2.imwrite(str(folder / black), np.zeros((64, 64, 3), np.uint8))
    test = "".join(f"{n},{n.split('_')[0]},{n.split('_')[1]},0,{i},test\n" for i, n in enumerate(names))
    split = tmp_path / "black.csv"
    split.write_text(f"file,age,gender,race,group,split\n{black},30,0,0,999,train\n" + test)
    return folder, split


def test_collapse_guard_refuses_a_broken_calibration(black_calibration, tmp_path):
    """int8 calibrated on one black frame collapses; the command fails naming it, and the int8 file already in
    --out (here a real one: the bundled m's int8-qat file under that name) stays."""
    folder, broken = black_calibration
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(member("m").tflite("int8-qat"), out / "age_gender_int8.tflite")
    before = (out / "age_gender_int8.tflite").read_bytes()
    bad = run_cli("convert", "--targets", "int8", "--data", folder, "--split", broken, "--out", out, "--debug-images",
                  "4")
    assert_user_error(bad, "age_gender_int8.tflite rejected: MAE")
    assert (out / "age_gender_int8.tflite").read_bytes() == before
    report = json.loads((out / "convert_report.json").read_text())
    assert report["targets"][0]["status"] == "rejected"
    assert report["targets"][0]["details"]["mae_delta_to_float"] > 0.5


def test_without_data_calibrated_targets_are_skipped(converted_without_data):
    report = json.loads((converted_without_data / "convert_report.json").read_text())
    status = {r["target"]: (r["status"], r["reason"]) for r in report["targets"]}
    assert status["float32"][0] == "ok"
    assert status["int8"][0] == "skipped" and "--data" in status["int8"][1]
    assert not (converted_without_data / "age_gender_int8.tflite").exists()


def test_bad_input(tiny_run, tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    truncated = tmp_path / "model.keras"
    data = (tiny_run / "model.keras").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    lonely = tmp_path / "alone" / "model.keras"
    lonely.parent.mkdir()
    lonely.write_bytes(data)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    cases = [
        ([text], "not a readable Keras model"),
        ([truncated], "not a readable Keras model"),
        ([lonely, "--targets", "int8-qat"], "need the QAT twin"),
        ([tiny_run / "model.keras", "--targets", "int4"], "unknown target"),
        ([tiny_run / "model.keras", "--out", blocker / "x"], "cannot write"),
    ]
    for args, message in cases:
        assert_user_error(run_cli("convert", *args, "--out", tmp_path / "o") if "--out" not in args
                          else run_cli("convert", *args), message)
