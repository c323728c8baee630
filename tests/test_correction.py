"""The age decoding stored with a model, end to end on the tiny run: fitted by train and by fit-correction on the
validation side, carried by convert and bundle into the sidecars, applied alike by the TensorFlow evaluation, the
converter's validation and the TF-free runtime."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_age.eval.evaluation import evaluate_file
from edge_age.train.bundle import bundle_member
from edge_age.train.model_io import write_age_decoding
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.contract import ages_from_output
from firmware_host.infer.interpreter import invoke
from firmware_host.infer.model_info import read_info
from firmware_host.infer.postprocess import AgeDecoding
from firmware_host.infer.predictor import AgeGenderModel
from tests.conftest import assert_user_error, run_cli

# far from the identity, so that a path that forgets it is caught
DECODING = {"method": "median", "correction": {"x": [10.0, 30.0, 50.0], "y": [5.0, 38.0, 70.0]}}
MIRRORED = {**DECODING, "mirror": True}


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """The tiny run's files in a folder of the test's own, its device.json free to change."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "qat.h5", "device.json", "config.json", "metrics.json", "MODEL_CARD.md",
                 "history_float.csv", "history_qat.csv", "curves.png"):
        shutil.copy2(tiny_run / name, run)
    return run


def test_train_fits_the_decoding_on_the_validation_side(tiny_run, faces, split):
    facts = json.loads((tiny_run / "device.json").read_text())
    if "age_decoding" not in facts:  # one epoch of a tiny model may give every face one age: then nothing to fit
        from edge_age.data.split import read_split
        from edge_age.eval.correction import fit_age_decoding
        from edge_age.eval.evaluation import keras_outputs
        from edge_age.train.loop import split_arrays
        from edge_age.train.model_io import load_model
        val = split_arrays(faces, read_split(split), facts["input_size"])[0]["val"]
        with pytest.raises(EdgeAgeError, match="no map to fit"):
            fit_age_decoding(keras_outputs(load_model(tiny_run / "model.keras"), val.images)[0], val.ages)
        return
    decoding = facts["age_decoding"]
    fit = decoding["fit"]
    assert fit["side"] == "val" and fit["source"] == "model.keras" and decoding["method"] in ("mean", "median")
    val_faces = sum(1 for line in split.read_text().splitlines() if line.endswith(",val"))
    assert fit["faces"] == val_faces
    assert fit["val_mae"]["chosen"] <= min(fit["val_mae"][m] for m in ("mean", "median")) + 1e-9


def test_tf_and_tflite_paths_give_the_same_corrected_ages(run_copy, faces, split, tmp_path):
    write_age_decoding(run_copy / "model.keras", DECODING)
    out = tmp_path / "convert"
    proc = run_cli("convert", run_copy / "model.keras", "--targets", "float32", "--data", faces, "--split", split,
                   "--out", out, "--threshold", "100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tflite = out / "age_gender_float32.tflite"
    assert json.loads(tflite.with_suffix(".json").read_text())["age_decoding"] == DECODING

    keras_result, (keras_ages, _, labelled) = evaluate_file(run_copy / "model.keras", faces, split, "test")
    tflite_result, (tflite_ages, _, _) = evaluate_file(tflite, faces, split, "test")
    device = AgeGenderModel(tflite)
    device_ages = np.array([p.age for p in device.predict(labelled.images)])
    assert keras_result["age_decoding"] == tflite_result["age_decoding"] == "median, corrected (3 knots)"
    assert np.max(np.abs(keras_ages - device_ages)) < 0.05 and np.max(np.abs(tflite_ages - device_ages)) < 1e-6
    raw = device.infer(labelled.images)[device.info.outputs["age"].name]
    assert np.max(np.abs(device_ages - ages_from_output(raw))) > 3  # the correction was applied
    report = json.loads((out / "convert_report.json").read_text())
    validated = next(t for t in report["targets"] if t["target"] == "float32")["details"]
    assert validated["mae"] == pytest.approx(tflite_result["mae"], abs=1e-3)  # convert's check decodes alike
    assert report["keras"]["float"]["mae"] == pytest.approx(keras_result["mae"], abs=1e-3)


def test_mirror_averaging_travels_with_the_model(faces, split, tmp_path):
    """A decoding with mirror, on the reference model (the tiny run gives every face about one age): the TensorFlow
    evaluation, the converter's validation and the TF-free runtime each average the outputs of every face and of
    its mirror image, and give the same ages, not the plain ones."""
    from edge_age.train.models import reference_model
    model = tmp_path / "reference" / "model.keras"
    model.parent.mkdir()
    for name in ("model.keras", "device.json"):
        shutil.copy2(reference_model().with_name(name), model.parent)
    write_age_decoding(model, MIRRORED)
    out = tmp_path / "convert"
    proc = run_cli("convert", model, "--targets", "float32", "--data", faces, "--split", split, "--out", out,
                   "--threshold", "100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tflite = out / "age_gender_float32.tflite"
    assert json.loads(tflite.with_suffix(".json").read_text())["age_decoding"] == MIRRORED

    keras_result, (keras_ages, _, labelled) = evaluate_file(model, faces, split, "test")
    tflite_result, (tflite_ages, _, _) = evaluate_file(tflite, faces, split, "test")
    device = AgeGenderModel(tflite)
    device_ages = np.array([p.age for p in device.predict(labelled.images)])
    assert keras_result["age_decoding"] == tflite_result["age_decoding"] == \
        "median, corrected (3 knots), mirror-averaged"
    assert np.max(np.abs(keras_ages - device_ages)) < 0.05 and np.max(np.abs(tflite_ages - device_ages)) < 1e-6
    age = device.info.outputs["age"].name
    plain = invoke(device.interpreter, labelled.images)[age]
    mirrored = invoke(device.interpreter, np.ascontiguousarray(labelled.images[:, :, ::-1]))[age]
    by_hand = ages_from_output((plain + mirrored) / 2, AgeDecoding.from_dict(MIRRORED))
    assert np.max(np.abs(device_ages - by_hand)) < 1e-6
    assert np.mean(np.abs(device_ages - ages_from_output(plain, AgeDecoding.from_dict(DECODING)))) > 0.1
    validated = next(t for t in json.loads((out / "convert_report.json").read_text())["targets"]
                     if t["target"] == "float32")["details"]
    assert validated["mae"] == pytest.approx(tflite_result["mae"], abs=1e-3)


def test_bundle_carries_the_run_decoding_into_its_sidecars(run_copy, converted, tmp_path):
    write_age_decoding(run_copy / "model.keras", DECODING)  # fitted after the files were converted
    facts = bundle_member("x", run=run_copy, converted=converted, copy_keras=False, dest=tmp_path / "family")
    for file in facts["files"].values():
        assert read_info(tmp_path / "family" / "x" / file).age_decoding == DECODING
    assert json.loads((tmp_path / "family" / "x" / "device.json").read_text())["age_decoding"] == DECODING
    for name in ("MODEL_CARD.md", "history_float.csv", "history_qat.csv", "curves.png"):  # how it was trained
        assert (tmp_path / "family" / "x" / name).read_bytes() == (run_copy / name).read_bytes(), name


def test_convert_fits_each_8bit_file_on_its_own_outputs(faces, split, tmp_path):
    """convert --fit-decoding on the reference model (mirror-averaged decoding in its device.json): the int8-qat and
    edgetpu files each get the decoding fit-correction would fit on their own validation outputs, are validated
    with it, and keep it when bundled; float32 keeps device.json's."""
    from edge_age.eval.correction import fit_model_file
    from edge_age.train.models import reference_model
    run = tmp_path / "run"
    shutil.copytree(reference_model().parent, run)
    write_age_decoding(run / "model.keras", MIRRORED)
    out = tmp_path / "convert"
    proc = run_cli("convert", run / "model.keras", "--targets", "float32,int8-qat,edgetpu", "--data", faces,
                   "--split", split, "--out", out, "--threshold", "100", "--fit-decoding")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "age_gender_float32.json").read_text())["age_decoding"] == MIRRORED
    page = (out / "convert_report.md").read_text()
    assert "| float32 | median, corrected (3 knots), mirror-averaged | the Keras model's (device.json) |" in page
    assert "| int8-qat | " in page and page.count("| this file's outputs, validation side |") == 2
    report = {t["target"]: t["details"] for t in json.loads((out / "convert_report.json").read_text())["targets"]}
    for target in ("int8-qat", "edgetpu"):
        tflite = out / f"age_gender_{target}.tflite"
        fitted = json.loads(tflite.with_suffix(".json").read_text())["age_decoding"]
        assert fitted["fit"]["source"] == tflite.name and fitted["fit"]["side"] == "val" and fitted["mirror"] is True
        assert report[target]["age_decoding_fitted_on_file"] and "age_decoding_fitted_on_file" not in report["float32"]
        assert report[target]["mae"] == pytest.approx(evaluate_file(tflite, faces, split, "test")[0]["mae"], abs=1e-3)
        again = tmp_path / tflite.name
        for suffix in (".tflite", ".json"):
            shutil.copy2(tflite.with_suffix(suffix), again.with_suffix(suffix))
        assert fit_model_file(again, faces, split, mirror=True)[0] == fitted  # the same fit as fit-correction's
    facts = bundle_member("x", run=run, converted=out, copy_keras=False, dest=tmp_path / "family")
    for file in facts["files"].values():
        assert read_info(tmp_path / "family" / "x" / file).age_decoding == \
            json.loads((out / file).with_suffix(".json").read_text())["age_decoding"] != MIRRORED
    assert_user_error(run_cli("convert", run / "model.keras", "--targets", "int8-qat", "--data", faces,
                              "--out", tmp_path / "no_split", "--fit-decoding"), "--split")


def test_fit_correction_writes_into_device_json_and_sidecars(member_tflite, faces, split, tmp_path):
    """On trained models (the tiny run may give every face one age: nothing to fit): the reference model's Keras
    file and a bundled member's int8-qat file, each copied so that their decoding is free to change."""
    from edge_age.train.models import reference_model
    keras_dir = tmp_path / "keras"
    keras_dir.mkdir()
    for name in ("model.keras", "device.json"):
        shutil.copy2(reference_model().with_name(name), keras_dir)
    proc = run_cli("fit-correction", keras_dir / "model.keras", "--split", split, "--data", faces)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decoding = json.loads((keras_dir / "device.json").read_text())["age_decoding"]
    assert decoding["fit"]["side"] == "val" and "validation MAE" in proc.stdout and "device.json" in proc.stdout
    tflite = tmp_path / member_tflite.name
    for suffix in (".tflite", ".json"):
        shutil.copy2(member_tflite.with_suffix(suffix), tmp_path)
    proc = run_cli("fit-correction", tflite, "--split", split, "--data", faces)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(tflite.with_suffix(".json").read_text())["age_decoding"]
    assert plain["fit"]["source"] == tflite.name and "mirror" not in plain
    proc = run_cli("fit-correction", tflite, "--split", split, "--data", faces, "--mirror")
    assert proc.returncode == 0, proc.stderr[-3000:]
    mirrored = json.loads(tflite.with_suffix(".json").read_text())["age_decoding"]
    assert mirrored["mirror"] is True and "mirror-averaged" in proc.stdout
    assert mirrored["fit"]["val_mae"]["mean"] != plain["fit"]["val_mae"]["mean"]  # fitted on other outputs


def test_fit_correction_refuses_bad_input(run_copy, faces, split, tmp_path):
    before = (run_copy / "device.json").read_text()
    assert_user_error(run_cli("fit-correction", run_copy / "config.json", "--split", split, "--data", faces),
                      "is not a .keras, .h5 or .tflite model file")
    assert_user_error(run_cli("fit-correction", run_copy / "model.keras", "--split", tmp_path / "none.csv",
                              "--data", faces), "none.csv does not exist")
    no_val = tmp_path / "no_val.csv"
    no_val.write_text("\n".join(ln for ln in split.read_text().splitlines() if not ln.endswith(",val")) + "\n")
    assert_user_error(run_cli("fit-correction", run_copy / "model.keras", "--split", no_val, "--data", faces),
                      "no labelled faces")
    broken = {**json.loads(before), "age_decoding": {**DECODING, "correction": {"x": [10, 30, 50], "y": [9, 8, 7]}}}
    (run_copy / "device.json").write_text(json.dumps(broken))
    assert_user_error(run_cli("fit-correction", run_copy / "model.keras", "--split", split, "--data", faces),
                      "device.json: age_decoding.correction.y: must never decrease")
    assert json.loads((run_copy / "device.json").read_text()) == broken  # nothing written over it
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(b"not a model")
    assert_user_error(run_cli("fit-correction", lone, "--split", split, "--data", faces), "lone.json is missing")
