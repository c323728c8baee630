"""Odd inputs (issue 22): `predict` on a FIFO, on a symbolic link to a folder and on a folder of 1000 images
(a progress bar, memory flat); a model path that is a folder; a sidecar with an unknown key or a wrong type;
`--threads 0`, `-1` and `9999`; `run` on a video truncated midway. Real CLI runs, the bundled member n."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from edge_age.data.scenes import make_video
from tests.conftest import ROOT, UTK64, assert_user_error, copy_slice, run_cli, sample_names
from tests.scenes import chips

MODEL = ROOT / "edge_age" / "family" / "n" / "age_gender_int8-qat.tflite"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return copy_slice(UTK64, tmp_path_factory.mktemp("faces"), sample_names(UTK64, 4))


def rows_of(out: Path) -> list[dict]:
    with (out / "faces.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_fifo_is_skipped_not_waited_on_and_a_linked_folder_is_read(faces, tmp_path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)  # nobody writes into it: reading it would block for ever
    link = tmp_path / "linked"
    link.symlink_to(faces, target_is_directory=True)
    proc = run_cli("predict", fifo, link, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped camera.jpg: not a regular file (a FIFO, socket or device)" in proc.stderr
    assert "unreadable: 1" in proc.stdout
    direct = run_cli("predict", faces, "--out", tmp_path / "d")
    assert direct.returncode == 0, direct.stderr[-2000:]
    linked, plain = rows_of(tmp_path / "p"), rows_of(tmp_path / "d")
    assert [(r["age"], r["female"]) for r in linked] == [(r["age"], r["female"]) for r in plain] and len(plain) >= 4


def test_model_paths_sidecars_and_thread_counts_are_one_line(faces, tmp_path):
    image = sorted(faces.iterdir())[0]
    assert_user_error(run_cli("predict", image, "--model", tmp_path, "--out", tmp_path / "p"),
                      f"model {tmp_path} is a folder: give its .tflite file")
    good = json.loads(MODEL.with_suffix(".json").read_text())
    for name, change, fragment in (("extra", {"colour": "blue"}, "'colour' was unexpected"),
                                   ("type", {"input_size": "96"}, "input_size")):
        copy = Path(shutil.copy(MODEL, tmp_path / f"{name}.tflite"))
        copy.with_suffix(".json").write_text(json.dumps({**good, **change}))
        assert_user_error(run_cli("predict", image, "--model", copy, "--out", tmp_path / "p"), fragment)
    for threads in ("0", "-1"):
        proc = run_cli("predict", image, "--threads", threads, "--out", tmp_path / "p")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--threads" in proc.stderr
    for command in (("predict", image), ("run", "-s", image), ("serve", "--port", "0")):
        assert_user_error(run_cli(*command, "--threads", "9999"), "--threads must be from 1 to 64, not 9999")


def test_run_on_a_video_truncated_midway_ends_with_the_frames_it_read(tmp_path):
    video = make_video(chips(1, seed=2), tmp_path / "whole.avi", frames=40, size=(320, 240))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    proc = run_cli("run", "-m", "n", "-s", cut, "--threads", "1", "-o", tmp_path / "run")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "run_report.json").read_text())
    assert report["status"] == "finished" and 5 <= report["frames"] < 40


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:"))) / 1024


def test_a_folder_of_1000_images_shows_progress_and_keeps_memory_flat(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    real = sorted(UTK64.iterdir())[:20]
    for i in range(1000):  # real faces, each re-encoded at another quality: 1000 different files
        image = cv2.imread(str(real[i % len(real)]))
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 50 + i // 20])
    out = tmp_path / "p"
    log = tmp_path / "predict.log"
    proc = subprocess.Popen([sys.executable, "-m", "edge_age", "predict", str(folder), "--out", str(out),
                             "--threads", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    marks, rss = (200, 800), []  # annotated copies: of the images with a face (most, not all)
    while proc.poll() is None and len(rss) < len(marks):
        done = len(os.listdir(out)) if out.is_dir() else 0  # an annotated copy per image, as it goes
        if done >= marks[len(rss)]:
            rss.append(rss_mib(proc.pid))
        time.sleep(0.05)
    stdout, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert "unreadable: 0" in stdout and "predicting" in log.read_text() and "1000/1000" in log.read_text()
    assert len(rss) == 2 and rss[1] - rss[0] < 10, rss  # the 600 images between did not pile up in memory
