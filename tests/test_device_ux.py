"""The device as a user first meets it (issue 20): the Python API (runtime only), YuNet bundled and picked by
``auto``, ``predict --crops``, one-line errors for a missing image or model, the systemd unit and a clean SIGTERM
stop of ``run --serve``, ``models`` saying where its latencies come from, and a quiet ``convert``. Real chips
from ../shared, the bundled member s, real subprocesses and a real server on loopback."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest

from edge_age.data.scenes import make_video
from firmware_host.detect.detectors import BUNDLED, YUNET_FILE, find_model, make_detector
from firmware_host.errors import EdgeAgeError
from tests.conftest import ROOT, UTK200, assert_user_error, console_of, copy_slice, run_cli, sample_names
from tests.scenes import chips, without_tensorflow
from tests.test_hardening import free_port, wait_for_frame


@pytest.fixture(scope="module")
def chip_folder(tmp_path_factory) -> Path:
    """Ten ready-made 200x200 UTKFace chips."""
    return copy_slice(UTK200, tmp_path_factory.mktemp("chips"), sample_names(UTK200, 10))


def no_yunet_override(env: dict) -> dict:
    """``env`` without the test environment's EDGE_AGE_YUNET: the detector a plain install finds."""
    return {k: v for k, v in env.items() if k != "EDGE_AGE_YUNET"}


def python(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` as a plain install runs it: without an EDGE_AGE_YUNET that names another YuNet file."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=no_yunet_override({**os.environ, **(env or {})}))


# --- YuNet in the package --------------------------------------------------------------------------------------

def test_yunet_ships_with_its_licence_and_auto_picks_it(monkeypatch, tmp_path):
    assert (BUNDLED / YUNET_FILE).stat().st_size > 200_000
    assert "MIT License" in (BUNDLED / "LICENSE.opencv_zoo-yunet-MIT").read_text()
    monkeypatch.delenv("EDGE_AGE_YUNET", raising=False)
    assert find_model("yunet") == BUNDLED / YUNET_FILE
    assert make_detector("auto").name == "yunet"
    cached = tmp_path / YUNET_FILE  # the cache still comes first, then the environment variable
    cached.write_bytes((BUNDLED / YUNET_FILE).read_bytes())
    monkeypatch.setattr("firmware_host.detect.detectors.CACHE", tmp_path)
    assert find_model("yunet") == cached
    monkeypatch.setenv("EDGE_AGE_YUNET", str(tmp_path / "missing.onnx"))
    with pytest.raises(EdgeAgeError, match="missing.onnx does not exist"):
        make_detector("auto")


# --- the Python API --------------------------------------------------------------------------------------------

def test_api_predicts_paths_arrays_and_crops_without_tensorflow(chip_folder, tmp_path):
    photo = tmp_path / "photo.jpg"
    scene = cv2.copyMakeBorder(chips(1, seed=5)[0].image, 120, 120, 160, 160, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    cv2.imwrite(str(photo), scene)
    chip = sorted(chip_folder.iterdir())[0]
    code = f"""
import json, sys
import cv2
import edge_age
model = edge_age.load("s")
faces = model.predict({str(photo)!r})
same = model.predict(cv2.imread({str(photo)!r}))
chip = model.predict({str(chip)!r}, crops=True)
print(json.dumps({{"faces": [f.to_dict() for f in faces], "same": [f.age for f in same],
                  "chip": [f.to_dict() for f in chip], "describe": model.describe(),
                  "tf": [m for m in sys.modules if m.startswith(("tensorflow", "tf_keras"))]}}))
"""
    proc = python("-c", code, env=without_tensorflow(tmp_path / "blocked"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["tf"] == []
    assert "detector yunet (bundled model)" in out["describe"]
    (face,) = out["faces"]
    x, y, w, h = face["box"]
    assert 100 < x < 220 and 60 < y < 180 and 80 < w < 240  # the chip sits at (160, 120), 200 px wide
    assert 1 <= face["age"] <= 100 and 0 <= face["female"] <= 1 and face["gender"] in "FM"
    assert set(face["landmarks"]) == {"right_eye", "left_eye", "nose", "mouth_right", "mouth_left"}
    assert out["same"] == [face["age"]]  # a path and its pixels give the same answer
    (whole,) = out["chip"]
    assert whole["box"] == [0.0, 0.0, 200.0, 200.0] and whole["score"] == 1.0 and 1 <= whole["age"] <= 100


def test_api_errors_are_one_line_errors(tmp_path):
    import numpy as np

    import edge_age
    with pytest.raises(EdgeAgeError, match="model file .*nosuch.tflite does not exist"):
        edge_age.load(tmp_path / "nosuch.tflite")
    with pytest.raises(EdgeAgeError, match="unknown model 'q'"):
        edge_age.load("q")
    model = edge_age.load("s", detector=None)
    with pytest.raises(EdgeAgeError, match="nosuch.jpg does not exist"):
        model.predict(tmp_path / "nosuch.jpg", crops=True)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(EdgeAgeError, match="bad.jpg is not a readable image"):
        model.predict(tmp_path / "bad.jpg", crops=True)
    with pytest.raises(EdgeAgeError, match="must be uint8"):
        model.predict(np.zeros((8, 8, 3), np.float32), crops=True)
    with pytest.raises(EdgeAgeError, match="without a detector"):
        model.predict(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(AttributeError):
        edge_age.nothing  # noqa: B018


# --- predict: --crops and the errors ---------------------------------------------------------------------------

def test_predict_crops_finds_every_chip_and_detection_finds_them_too(chip_folder, tmp_path):
    proc = python("-m", "edge_age", "predict", chip_folder, "--crops", "--out", tmp_path / "crops")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no detector: each image is one face chip" in proc.stderr
    rows = list(csv.DictReader((tmp_path / "crops" / "faces.csv").open()))
    assert len(rows) == 10 and all(r["face"] == "0" and float(r["w"]) == float(r["h"]) == 200 for r in rows)
    proc = python("-m", "edge_age", "predict", chip_folder, "--out", tmp_path / "detected")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("detector yunet (bundled model)") == 1, proc.stderr
    assert "10 of 10 images with a face" in proc.stdout


def test_predict_errors_name_the_missing_path(tmp_path, chip_folder):
    out = ("--out", tmp_path / "o")
    assert_user_error(run_cli("predict", tmp_path / "nosuch.jpg", *out), "nosuch.jpg does not exist")
    assert_user_error(run_cli("predict", chip_folder, tmp_path / "gone", *out), "gone does not exist")
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("predict", tmp_path / "empty", "--out", tmp_path / "o"), "no images in")
    proc = run_cli("predict", chip_folder, "-m", tmp_path / "nosuch.tflite", "--out", tmp_path / "o")
    assert_user_error(proc, "model file", "nosuch.tflite does not exist")
    assert "nosuch.json" not in proc.stderr


# --- the camera service ----------------------------------------------------------------------------------------

def test_systemd_unit_folds_the_run_options_into_exec_start(tmp_path):
    proc = run_cli("run", "--systemd-unit", "-m", "n", "--source", "0", "--width", "640", "--out", "/var/lib/edge age",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (start,) = [line for line in lines if line.startswith("ExecStart=")]
    assert " run -m n --source 0 --width 640 --out '/var/lib/edge age' --serve 0.0.0.0:8080" in start
    assert "--systemd-unit" not in start
    assert {"Restart=on-failure", "KillSignal=SIGTERM", f"WorkingDirectory={tmp_path}",
            "WantedBy=multi-user.target"} <= set(lines)
    proc = run_cli("run", "--serve", "127.0.0.1:9000", "--systemd-unit", cwd=tmp_path)
    (start,) = [line for line in proc.stdout.splitlines() if line.startswith("ExecStart=")]
    assert start.endswith(" run --serve 127.0.0.1:9000")


def test_run_serve_stops_cleanly_on_sigterm(tmp_path):
    video = make_video(chips(1, seed=7), tmp_path / "face.avi", frames=10, size=(320, 240))
    port, out = free_port(), tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edge_age", "run", "-m", "s", "-s", str(video), "--loop",
                             "--serve", f"127.0.0.1:{port}", "--threads", "1", "--max-fps", "20", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=no_yunet_override(dict(os.environ)))
    try:
        wait_for_frame(port)
        seen = 0
        while seen < 2 and proc.poll() is None:  # frames 0 and 1 are counted once frame 2 is served
            seen = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=10).read())["frame"]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)  # systemctl stop
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr and f"http://127.0.0.1:{port}/" in stderr
    assert stderr.count("detector yunet") == 1
    report = json.loads((out / "run_report.json").read_text())
    assert report["status"] == "stopped" and report["frames"] >= 2
    assert f"{report['frames']} frames" in stdout


# --- numbers and noise -----------------------------------------------------------------------------------------

def test_models_say_where_latency_was_measured_and_measure_here():
    proc = run_cli("models", "--measure")
    assert proc.returncode == 0, proc.stderr
    assert "on the machine that built the family ('vm'" in proc.stdout
    assert "p50 ms here" in proc.stdout and "ai-edge-litert 2." in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| m ", "| s ", "| n "))]
    assert len(rows) == 3 and all(float(r.rstrip(" |").rsplit("|", 1)[1]) > 0 for r in rows)
    proc = run_cli("models", "--json", "--measure")
    assert all(m["latency_ms_p50_here"] > 0 for m in json.loads(proc.stdout))


def test_convert_is_quiet_unless_verbose(converted, tiny_run, tmp_path):
    """The session's convert of every target ran int8's calibration, its MLIR quantizer and the
    QuantizationDebugger, the QAT conversion, LiteRT's validation and the Edge TPU check: none of their own lines
    (TensorFlow's CUDA probe, LiteRT's XNNPACK notice, the quantizer's) reached the terminal; --verbose shows them."""
    quiet = console_of(converted).read_text()
    for noise in NOISE:
        assert noise not in quiet, quiet[-3000:]
    proc = run_cli("--verbose", "convert", tiny_run / "model.keras", "--targets", "int8-qat", "--out",
                   tmp_path / "verbose")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(noise in proc.stderr for noise in NOISE), proc.stderr[-3000:]


NOISE = ("Statistics for quantized inputs", "fully_quantize", "tf.lite.Interpreter is deprecated", "UserWarning",
         "Created TensorFlow Lite XNNPACK delegate", "cuInit")
