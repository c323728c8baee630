"""The device commands end to end, with TensorFlow made unimportable: run, predict, evaluate --detect."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import cv2
import pytest

from edge_age.data.scenes import make_photos, make_video
from firmware_host.detect.tracking import iou
from firmware_host.pipeline.defaults import DETECT_EVERY, DETECT_SIZE
from tests.conftest import ROOT, UTK64, assert_user_error, ctrl_c_enabled, run_cli
from tests.scenes import YUNET, chips, without_tensorflow


@pytest.fixture(scope="module")
def model(member_tflite):
    return member_tflite


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """60 frames, four faces: the first leaves the frame, the last enters it."""
    return make_video(chips(4, seed=3), tmp_path_factory.mktemp("video") / "faces.avi", frames=60)


@pytest.fixture(scope="module")
def no_tf(tmp_path_factory):
    return without_tensorflow(tmp_path_factory.mktemp("blocked"))


def test_run_on_a_video(model, video, no_tf, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--model", model, "--source", video, "--out", out, "--detector", "yunet",
                   "--video", out / "annotated.avi", "--jsonl", out / "frames.jsonl", "--threads", "1", env=no_tf)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "run_report.json").read_text())
    assert report["status"] == "finished" and report["frames"] == 60 and report["detector"] == "yunet"
    assert report["delegate"] == "cpu" and report["delegate_coverage"]["fraction"] > 0.9
    for stage in ("capture", "preprocess", "postprocess", "draw"):
        assert report["stages"][stage]["count"] == 60 and report["stages"][stage]["p50_ms"] >= 0
    detected = -(-60 // DETECT_EVERY)  # the default --detect-every; faces are carried forward between
    assert report["stages"]["detect"]["count"] == report["frames_detected"] == detected
    assert report["frames_carried"] == 60 - detected and report["detect_size"] == DETECT_SIZE
    assert 50 <= report["stages"]["infer"]["count"] <= 60  # one batched invoke per frame with a face
    assert report["system"]["cpu"] and report["fps"] > 0

    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(60))
    truth = json.loads(video.with_suffix(".truth.json").read_text())
    ids: dict[int, Counter] = {i: Counter() for i in range(4)}
    for record, faces in zip(records, truth["frames"]):
        for face in record["faces"]:
            assert 0 <= face["female"] <= 1 and 0 <= face["age"] <= 116
            match = [t["face"] for t in faces if iou(face["box"], t["box"]) > 0.3]
            assert match, f"frame {record['frame']}: {face['box']} is not a face"
            ids[match[0]][face["track"]] += 1
    for face, counter in ids.items():  # each face keeps one track id
        track, hits = counter.most_common(1)[0]
        assert hits >= 0.8 * sum(counter.values()) and hits >= 8, (face, counter)
    main = [ids[i].most_common(1)[0][0] for i in range(4)]
    assert len(set(main)) == 4
    assert main[3] > max(main[:3])  # the face that enters gets a new id
    assert all(f["track"] != main[0] for r in records[-10:] for f in r["faces"])  # the one that left is gone
    capture = cv2.VideoCapture(str(out / "annotated.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 60

    table = run_cli("run-table", out / "run_report.json", "--out", out / "runs.md", env=no_tf)
    assert table.returncode == 0, table.stderr
    row = (out / "runs.md").read_text().splitlines()[2].split(" | ")
    assert row[4:7] == ["yunet", "60", str(round(report["faces"] / 60, 2))]
    assert_user_error(run_cli("run-table", video, env=no_tf), "is not a run report")


def test_run_interrupted_still_writes_its_report(model, video, tmp_path):
    long_video = make_video(chips(1, seed=4), tmp_path / "long.avi", frames=400)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edge_age", "run", "--model", str(model), "--source",
                             str(long_video),
                             "--out", str(out), "--detector", "haar", "--jsonl", str(out / "f.jsonl")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_enabled)
    deadline = time.time() + 120
    while time.time() < deadline and sum(p.read_text().count("\n") for p in out.glob(".f.jsonl.*")) < 5:
        time.sleep(0.2)  # records go to a .part file beside f.jsonl until the run ends
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    report = json.loads((out / "run_report.json").read_text())
    assert report["status"] == "interrupted" and 5 <= report["frames"] < 400
    assert (out / "f.jsonl").read_text().count("\n") == report["frames"] and not list(out.glob(".f.jsonl.*"))


def test_predict_photos_with_labels(model, no_tf, tmp_path):
    photos = tmp_path / "photos"
    labels = make_photos(chips(8, seed=6), photos, grey_every=3, seed=6)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    proc = run_cli("predict", photos, "--model", model, "--labels", labels, "--out", out, "--detector", "yunet",
                   env=no_tf)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "unreadable: 1" in proc.stdout
    rows = list(csv.DictReader((out / "faces.csv").open()))
    assert {r["file"] for r in rows} == {r["file"] for r in csv.DictReader(labels.open())}
    accuracy = json.loads((out / "accuracy.json").read_text())
    assert accuracy["n"] + len(accuracy["without_face"]) == 8 and accuracy["n"] >= 6 and accuracy["mae"] > 0
    assert len(list(out.glob("*.jpg"))) == accuracy["n"]


def test_evaluate_detect_on_raw_photos(model, tmp_path):
    labels = make_photos(chips(10, seed=7), tmp_path / "photos", seed=7)
    proc = run_cli("evaluate", model, "--data", tmp_path / "photos", "--labels", labels, "--detect",
                   "--detector", "yunet", "--detector-model", YUNET, "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["detection"]["faces_found"] == result["n"] >= 9 and result["detection"]["photos"] == 10


def test_device_errors_are_one_line(model, video, tmp_path):
    assert_user_error(run_cli("run", "--model", model, "--source", "7", "--out", tmp_path), "camera 7 cannot be opened")
    assert_user_error(run_cli("run", "--model", model, "--source", video, "--out", tmp_path, "--delegate", "gpu"),
                      "gpu delegate library", "EDGE_AGE_GPU_DELEGATE")
    assert_user_error(run_cli("run", "--model", model, "--source", video, "--out", tmp_path, "--delegate", "edgetpu"),
                      "not compiled for the Edge TPU")
    compiled = tmp_path / "fake_edgetpu.tflite"
    compiled.write_bytes(model.read_bytes() + b"edgetpu-custom-op")
    compiled.with_suffix(".json").write_bytes(model.with_suffix(".json").read_bytes())  # a valid sidecar beside it
    assert_user_error(run_cli("run", "--model", compiled, "--source", video, "--out", tmp_path, "--delegate",
                              "edgetpu"),
                      "libedgetpu.so.1", "apt install libedgetpu1-std")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(model.read_bytes()[:5000])
    (tmp_path / "cut.json").write_text(model.with_suffix(".json").read_text())
    photos = tmp_path / "photos"  # a folder with an image: the model is what is wrong
    photos.mkdir()
    shutil.copy2(UTK64 / sorted(os.listdir(UTK64))[0], photos)
    assert_user_error(run_cli("predict", photos, "--model", truncated, "--out", tmp_path), "not a valid TFLite "
                                                                                                 "model")
    assert_user_error(run_cli("run", "--model", model, "--source", tmp_path / "nothing", "--out", tmp_path),
                      "is not a camera index")
    assert_user_error(run_cli("run", "--model", model, "--source", video, "--out", tmp_path, "--show"), "--show needs "
                                                                                                        "a display")
