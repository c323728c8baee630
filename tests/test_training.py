"""Training, QAT, resume and evaluation on a tiny MobileNet and a slice of real faces."""
import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import IMAGENET, ROOT, TINY, assert_user_error, run_cli


def test_loss_falls_on_real_faces(faces):
    from edge_age.data.faceset import load_faces
    from edge_age.data.pipeline import make_dataset
    from edge_age.train.loop import TrainConfig, compile_model
    from edge_age.train.models import ModelSpec, build_model
    data = load_faces(faces, size=32)
    usable = data.usable()[:32]
    ds = make_dataset(np.asarray(data.images)[usable], np.array([data.labels[i].age for i in usable]),
                      np.array([data.labels[i].gender for i in usable]), batch_size=32)
    x, y, w = next(iter(ds))
    config = TrainConfig(spec=ModelSpec("mobilenet_v2", 0.35, 32))
    model = build_model(config.spec)
    compile_model(model, config, 3e-3)
    losses = [float(model.train_on_batch(x, y, sample_weight=w)[0]) for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_run_folder(tiny_run):
    for name in ("config.json", "model.keras", "qat.h5", "metrics.json", "MODEL_CARD.md", "curves.png",
                 "history_float.csv", "history_qat.csv"):
        assert (tiny_run / name).is_file(), name
    assert not (tiny_run / "backup").exists()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for phase in ("float", "qat"):
        assert {"n", "mae", "cs5", "epsilon_error", "gender_accuracy", "breakdown"} <= set(metrics[phase])
    card = (tiny_run / "MODEL_CARD.md").read_text()
    assert metrics["split_sha256"][:16] in card and "tensorflow-model-optimization" in card
    assert "age_group" in card and "race" in card


def test_qat_model_reloads_identically(tiny_run):
    import tensorflow_model_optimization as tfmot

    from edge_age.train.model_io import load_model
    from firmware_host.infer.preprocess import normalize
    qat = load_model(tiny_run / "qat.h5")
    assert any("quant" in layer.name for layer in qat.layers)
    x = normalize(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    first = qat(x, training=False)
    # rebuild from the float parent with quantize_model, then load the QAT weights: the same numbers
    rebuilt = tfmot.quantization.keras.quantize_model(load_model(tiny_run / "model.keras"))
    rebuilt.load_weights(str(tiny_run / "qat.h5"))
    second = rebuilt(x, training=False)
    again = load_model(tiny_run / "qat.h5")(x, training=False)
    for key in first:
        np.testing.assert_array_equal(np.asarray(first[key]), np.asarray(again[key]))
        np.testing.assert_array_equal(np.asarray(first[key]), np.asarray(second[key]))


def test_evaluate_keras_against_float32_tflite(tiny_run, converted, faces, split, tmp_path):
    tflite = tmp_path / "model.tflite"  # the session's float32 conversion, without its sidecar
    tflite.write_bytes((converted / "age_gender_float32.tflite").read_bytes())
    results = {}
    for model in (tiny_run / "model.keras", tflite):
        out = tmp_path / model.suffix[1:]
        proc = run_cli("evaluate", model, "--data", faces, "--split", split, "--json", out / "m.json", "--out", out)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[model.suffix] = json.loads((out / "m.json").read_text())
        assert (out / "predicted_vs_true.png").is_file() and (out / "error_by_age.png").is_file()
    keras_, lite = results[".keras"], results[".tflite"]
    assert keras_["n"] == lite["n"] > 0
    assert abs(keras_["mae"] - lite["mae"]) < 0.01
    assert keras_["gender_accuracy"] == pytest.approx(lite["gender_accuracy"], abs=1 / keras_["n"] + 1e-9)


def test_evaluate_with_labels_csv(tiny_run, faces, tmp_path):
    names = sorted(p.name for p in faces.iterdir())[:10]
    labels = tmp_path / "labels.csv"
    labels.write_text("file,age\n" + "".join(f"{n},{n.split('_')[0]}\n" for n in names))
    proc = run_cli("evaluate", tiny_run / "model.keras", "--data", faces, "--labels", labels, "--json",
                   tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["n"] == 10 and "gender_accuracy" not in result


def test_resume_after_kill(faces, split, tmp_path):
    """Kill training after its first epoch; --resume finishes the remaining epochs, none twice."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "edge_age", "train", "--data", str(faces), "--split", str(split), "--out", str(run),
           *TINY, "--epochs", "3", "--qat-epochs", "0", "--patience", "5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = run / "history_float.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.keras").exists()
    assert_user_error(run_cli("train", "--data", faces, "--split", split, "--out", run, *TINY), "--resume")
    done = run_cli("train", "--data", faces, "--split", split, "--out", run, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    epochs = [line.split(",")[0] for line in history.read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]
    assert (run / "model.keras").is_file()
    with history.open(newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_minutes"] == round(sum(seconds) / 60, 2)  # the killed process's epoch counts too


def test_a_run_killed_before_its_first_epoch_ends_resumes_from_its_pretrained_weights(faces, split, tmp_path):
    """Killed before any epoch was backed up, --resume builds the model from --weights again, not from scratch."""
    import h5py

    from edge_age.train.model_io import load_model
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "edge_age", "train", "--data", str(faces), "--split", str(split), "--out", str(run),
           *TINY, "--alpha", "1.0", "--cut", "block_3_expand_relu", "--weights", str(IMAGENET), "--epochs", "1",
           "--qat-epochs", "0", "--lr", "1e-4"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (run / "config.json").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "config.json").is_file() and not list(run.rglob("checkpoint"))
    done = run_cli("train", "--data", faces, "--split", split, "--out", run, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(IMAGENET) as f:
        pretrained = np.asarray(f["block_2_project"]["block_2_project"]["kernel"]).ravel()
    trained = load_model(run / "model.keras").get_layer("block_2_project").get_weights()[0].ravel()
    assert np.corrcoef(pretrained, trained)[0, 1] > 0.9


def test_a_run_starts_every_layer_from_a_trained_model(tiny_run, faces, split, tmp_path):
    """--weights MODEL.keras: every layer (heads too) starts from a trained model, here at another input size; the
    model card says so; a model of another width is refused in one line."""
    from edge_age.train.model_io import load_model
    run = tmp_path / "run"
    done = run_cli("train", "--data", faces, "--split", split, "--out", run, *TINY, "--input-size", "48",
                   "--weights", tiny_run / "model.keras", "--epochs", "1", "--qat-epochs", "0", "--lr", "1e-9")
    assert done.returncode == 0, done.stderr[-3000:]
    trained, started = load_model(tiny_run / "model.keras"), load_model(run / "model.keras")
    assert started.input_shape[1] == 48 and trained.input_shape[1] == 32
    for layer in ("Conv1", "block_5_project", "age", "gender"):
        before, after = trained.get_layer(layer).get_weights()[0], started.get_layer(layer).get_weights()[0]
        np.testing.assert_allclose(after, before, atol=1e-5, err_msg=layer)
    assert "| start | the trained model `model.keras` |" in (run / "MODEL_CARD.md").read_text()
    assert_user_error(run_cli("train", "--data", faces, "--split", split, "--out", tmp_path / "wide", *TINY,
                              "--alpha", "0.5", "--weights", tiny_run / "model.keras"), "model.keras does not fit")


def test_mirrored_strategy_on_two_cpus(faces, split, tmp_path):
    proc = run_cli("train", "--data", faces, "--split", split, "--out", tmp_path / "m", *TINY,
                   "--qat-epochs", "0", "--strategy", "mirrored")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "strategy MirroredStrategy: 2 replica(s)" in proc.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["float"]["n"] > 0


def test_imagenet_weights_load_and_wrong_ones_are_refused(tmp_path):
    from edge_age.train.models import ModelSpec, build_model
    from firmware_host.errors import EdgeAgeError
    model = build_model(ModelSpec("mobilenet_v2", 1.0, 64), IMAGENET)
    import h5py
    with h5py.File(IMAGENET) as f:
        expected = np.asarray(f["Conv1"]["Conv1"]["kernel"])
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0], expected)
    with pytest.raises(EdgeAgeError, match="do not fit"):
        build_model(ModelSpec("mobilenet_v2", 0.35, 64), IMAGENET)


def test_a_backbone_cut_at_stride_16_keeps_its_imagenet_weights_and_quantizes():
    """--cut block_13_expand_relu: MobileNetV2 1.0 ends there, pooled, with the ImageNet weights of the layers it
    keeps (about 0.7 M parameters with the heads); tfmot wraps it for QAT; an unknown layer is a one-line error."""
    import h5py

    from edge_age.train.model_io import quantize
    from edge_age.train.models import ModelSpec, build_model
    from firmware_host.errors import EdgeAgeError
    spec = ModelSpec("mobilenet_v2", 1.0, 64, cut="block_13_expand_relu")
    model = build_model(spec, IMAGENET)
    names = {layer.name for layer in model.layers}
    assert "block_13_expand_relu" in names and "block_13_depthwise" not in names and "out_relu" not in names
    assert 0.6e6 < model.count_params() < 0.8e6, model.count_params()
    with h5py.File(IMAGENET) as f:
        expected = np.asarray(f["block_12_project"]["block_12_project"]["kernel"])
    np.testing.assert_array_equal(model.get_layer("block_12_project").get_weights()[0], expected)
    assert spec.describe() == "mobilenet_v2 alpha 1.0 cut at block_13_expand_relu"
    qat = quantize(model)
    assert qat.count_params() > model.count_params()
    with pytest.raises(EdgeAgeError, match="no layer 'block_99' to cut"):
        build_model(ModelSpec("mobilenet_v2", 1.0, 64, cut="block_99"))


def test_bad_training_input(faces, split, tmp_path, tiny_run):
    blocker = tmp_path / "file"
    blocker.write_text("")
    other = tmp_path / "other.csv"
    other.write_text("file,age,gender,race,group,split\nnot_here.jpg,20,0,0,1,train\n")
    cases = [
        (["--split", tmp_path / "missing.csv", "--out", tmp_path / "a"], "cannot read split file"),
        (["--split", other, "--out", tmp_path / "b"], "does not match"),
        (["--split", split, "--out", tmp_path / "c", "--alpha", "0.5", "--weights", IMAGENET], "do not fit"),
        (["--split", split, "--out", tmp_path / "d", "--input-size", "16"], "input size 16"),
        (["--split", split, "--out", blocker / "run"], "cannot write"),
        (["--split", split, "--out", tmp_path / "e", "--arch", "resnet"], "unknown architecture"),
        (["--split", split, "--out", tiny_run], "already holds a run"),
    ]
    for args, message in cases:
        assert_user_error(run_cli("train", "--data", faces, *TINY, *args), message)
    for bad in (blocker, tmp_path / "missing.keras"):
        assert_user_error(run_cli("evaluate", bad, "--data", faces), "model")
