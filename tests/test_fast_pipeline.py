"""The fast camera pipeline and latency over time: detection on a reduced frame, faces carried forward
between detections, windows in run_report.json and bench.json. Real videos and photos made from the shared
chips, the real detectors, a real converted model, the CLI in a subprocess; nothing asserts on timing."""
from __future__ import annotations

import csv
import json
from collections import Counter

import cv2
import jsonschema
import numpy as np
import pytest

from edge_age.bench.jobs import MAX_SAMPLES
from edge_age.data.scenes import make_photos, make_video
from edge_age.report.bench_page import SCHEMA_FILE, SCHEMA_VERSION
from firmware_host.capture.sources import VideoSource
from firmware_host.detect.align import ALIGN_WITH
from firmware_host.detect.detectors import make_detector
from firmware_host.detect.tracking import iou
from firmware_host.pipeline.finder import FaceFinder
from firmware_host.pipeline.stages import StageTimer
from tests.conftest import assert_user_error, run_cli
from tests.scenes import YUNET, chips, moving_video, without_tensorflow

DETECTORS = ("yunet", "blazeface", "haar")


def detector(name: str, size: int = 0):
    return make_detector(name, YUNET if name == "yunet" else None, detect_size=size)


def curve(f: int) -> tuple:
    """A face swinging across the frame on a figure of eight, growing and shrinking, tilting: no straight line."""
    centre = (320 + 180 * np.sin(2 * np.pi * f / 60), 240 + 80 * np.sin(4 * np.pi * f / 60))
    return centre, 170 + 30 * np.sin(2 * np.pi * f / 90), 8 * np.sin(f / 9)


def frames_of(path) -> list[np.ndarray]:
    return [frame.image for frame in VideoSource(str(path)).frames()]


@pytest.fixture(scope="module")
def model(member_tflite):
    return member_tflite


@pytest.fixture(scope="module")
def fast_model(converted):
    """The tiny run's int8-qat file: fast enough that a 2.5 s bench takes more samples than a row keeps."""
    return converted / "age_gender_int8-qat.tflite"


@pytest.fixture(scope="module")
def swinging(tmp_path_factory):
    """60 frames of one face on a curve (about 19 pixels a frame at its fastest)."""
    path, truth = moving_video(tmp_path_factory.mktemp("swing") / "swing.avi", 60, [curve], seed=1)
    return frames_of(path), [t[0]["box"] for t in truth]


@pytest.mark.parametrize("name", DETECTORS)
def test_reduced_frame_boxes_map_back_to_the_full_frame(name, tmp_path):
    """Boxes found on the frame reduced to 320 pixels overlap the full-frame detection (IoU >= 0.7), landmarks too."""
    labels = make_photos(chips(10, seed=8), tmp_path, seed=8, grey_every=4)
    full, reduced = detector(name), detector(name, 320)
    assert reduced.name == full.name == name
    pairs = 0
    for row in csv.DictReader(labels.open()):
        image = cv2.imread(str(tmp_path / row["file"]), cv2.IMREAD_UNCHANGED)
        wide = [f for f in full.detect(image) if iou(f.box, [float(row[k]) for k in "xywh"]) > 0.3]
        small = reduced.detect(image)
        for face in wide:
            match = max(small, key=lambda f: iou(f.box, face.box), default=None)
            if match is None:
                continue
            pairs += 1
            assert iou(match.box, face.box) >= 0.7, (row["file"], match.box, face.box)
            for point, (x, y) in face.landmarks.items():
                assert np.hypot(*np.subtract(match.landmarks[point], (x, y))) < 0.12 * face.box[2], (row["file"], point)
    assert pairs >= 8


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("every", [3, 5])
def test_carried_faces_follow_a_moving_face(swinging, name, every):
    """Detected one frame in ``every``, carried forward by optical flow between: the face's box overlaps the
    true one (IoU >= 0.5) in at least 90% of frames, and of carried frames; eyes, nose, mouth stay on the face."""
    frames, truth = swinging
    finder, timer = FaceFinder(detector(name, 320), every), StageTimer()
    found = [finder.find(image, timer) for image in frames]
    assert (finder.detected, finder.carried) == (-(-60 // every), 60 - -(-60 // every))
    overlaps = [max((iou(f.box, box) for f in faces), default=0.0) for faces, box in zip(found, truth)]
    carried = [o for i, o in enumerate(overlaps) if i % every]
    assert np.mean(np.array(overlaps) >= 0.5) >= 0.9, overlaps
    assert np.mean(np.array(carried) >= 0.5) >= 0.9, carried
    for faces, box in zip(found, truth):  # the landmarks alignment uses move with the face
        for face in faces:
            for x, y in (xy for name, xy in face.landmarks.items() if name in ALIGN_WITH):
                assert box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


@pytest.mark.parametrize("every", [2, 3, 5])
def test_a_face_that_vanishes_is_dropped_at_the_next_detection(tmp_path, every):
    """A face that disappears (not at a detection frame) is carried at most until the next detection, which
    drops it: gone within N+1 frames; the face that stays is kept."""
    vanish = 31
    still = lambda f: ((560, 80), 110, 0.0) if f < vanish else None  # noqa: E731 - top right, clear of the curve
    path, truth = moving_video(tmp_path / "vanish.avi", 50, [curve, still], seed=2)
    gone_box = truth[vanish - 1][1]["box"]
    finder, timer = FaceFinder(detector("yunet", 320), every), StageTimer()
    shown = []
    for f, image in enumerate(frames_of(path)):
        faces = finder.find(image, timer)
        if any(iou(face.box, gone_box) > 0.3 for face in faces):
            shown.append(f)
        # detected frames find it
        assert any(iou(face.box, truth[f][0]["box"]) >= 0.5 for face in faces) or f % every, f
    assert vanish - 1 in shown and max(shown) < vanish + every, shown


def test_run_with_detection_every_n_frames(model, tmp_path):
    """The CLI run: settings, frames detected against carried forward, windows, an overlapped annotated video,
    and the face that walks out of the frame dropped within N+1 frames of leaving."""
    video = make_video(chips(4, seed=3), tmp_path / "faces.avi", frames=60)
    out, no_tf = tmp_path / "run", without_tensorflow(tmp_path / "blocked")
    proc = run_cli("run", "--model", model, "--source", video, "--out", out, "--detector", "yunet", "--threads", "1",
                   "--detect-size", "240", "--detect-every", "3", "--window", "1", "--overlap",
                   "--video", out / "annotated.avi", "--jsonl", out / "frames.jsonl", env=no_tf)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "20 frames detected, 40 carried" in proc.stdout
    report = json.loads((out / "run_report.json").read_text())
    assert (report["detect_size"], report["detect_every"], report["overlap"]) == (240, 3, True)
    assert (report["frames"], report["frames_detected"], report["frames_carried"]) == (60, 20, 40)
    stages = report["stages"]
    assert stages["detect"]["count"] == 20 and stages["carry"]["count"] == 60 and stages["draw"]["count"] == 60
    assert report["windows"] and sum(w["frames"] for w in report["windows"]) == 60
    for w in report["windows"]:
        assert set(w) == {"t_s", "frames", "fps", "stages", "temperature_c", "cpu_mhz"} and w["fps"] > 0
        assert w["temperature_c"] is None or 0 < w["temperature_c"] < 150
    assert [w["t_s"] for w in report["windows"]] == sorted(w["t_s"] for w in report["windows"])
    assert int(cv2.VideoCapture(str(out / "annotated.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 60

    truth = json.loads(video.with_suffix(".truth.json").read_text())["frames"]
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    ids = Counter(face["track"] for record, faces in zip(records, truth) for face in record["faces"]
                  for t in faces if t["face"] == 0 and iou(face["box"], t["box"]) > 0.3)
    leaver = ids.most_common(1)[0][0]
    left = max(f for f, faces in enumerate(truth) if any(t["face"] == 0 for t in faces)) + 1
    assert left < 50 and not [r["frame"] for r in records[left + 3:] if any(f["track"] == leaver for f in r["faces"])]
    assert all(r["faces"] for r in records)  # two faces stay in view throughout

    table = run_cli("run-table", out / "run_report.json", env=no_tf)
    assert table.returncode == 0, table.stderr
    header, row = (line.split(" | ") for line in table.stdout.splitlines()[::2][:2])
    assert row[header.index("detect px/every")] == "240/3" and row[header.index("detected/carried")] == "20/40"


def test_evaluate_and_predict_detect_on_a_reduced_photo(model, tmp_path):
    labels = make_photos(chips(10, seed=7), tmp_path / "photos", seed=7)
    proc = run_cli("evaluate", model, "--data", tmp_path / "photos", "--labels", labels, "--detect", "--detector",
                   "yunet",
                   "--detector-model", YUNET, "--detect-size", "240", "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    detection = json.loads((tmp_path / "m.json").read_text())["detection"]
    assert detection["detect_size"] == 240 and detection["faces_found"] >= 9
    proc = run_cli("predict", tmp_path / "photos", "--model", model, "--detector", "yunet", "--detect-size", "0",
                   "--out", tmp_path / "out", env={"EDGE_AGE_YUNET": str(YUNET)})
    assert proc.returncode == 0 and "10 of 10 images with a face" in proc.stdout, proc.stderr[-2000:]


def test_bench_duration_windows(fast_model, tmp_path):
    """bench --duration: windows of the documented shape per latency row, the thermal series (null readings
    here), schema version 2 validated, and the latency-over-time part of the pages."""
    out = tmp_path / "bench"
    proc = run_cli("bench", fast_model, "--duration", "2.5", "--window", "1", "--threads", "1", "--warmup", "2",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((out / "bench.json").read_text())
    jsonschema.validate(bench, json.loads(SCHEMA_FILE.read_text()), cls=jsonschema.Draft202012Validator)
    assert bench["schema_version"] == SCHEMA_VERSION == 2
    assert (bench["settings"]["duration_s"], bench["settings"]["window_s"], bench["settings"]["rounds"]) == (2.5, 1.0,
                                                                                                             1)
    row = bench["latency"][0]
    windows = row["windows"]
    assert 2 <= len(windows) <= 4 and all(set(w) == {"t_s", "p50", "p99", "n"} for w in windows)
    starts = np.array([w["t_s"] for w in windows]) - windows[0]["t_s"]
    assert (np.diff(starts) > 0).all() and np.allclose(starts, starts.round(), atol=2e-3)  # whole windows apart
    assert sum(w["n"] for w in windows) == row["runs"]
    assert len(row["samples_ms"]) == min(row["runs"], MAX_SAMPLES)  # a fast model's samples are thinned evenly
    assert all(0 < w["p50"] <= w["p99"] for w in windows)
    assert len(bench["thermal"]) >= 2 and all(set(s) == {"t_s", "temperature_c", "cpu_mhz", "throttling"}
                                              for s in bench["thermal"])
    assert "p50" in proc.stdout and "from the first window to the last" in proc.stdout
    md = (out / "bench.md").read_text()
    assert "## Latency over time" in md and "Throttling" in md and "over_time.png" in md
    assert (out / "bench.html").read_text().count("data:image/png;base64,") == 2  # latency spread, over time

    old = {**bench, "schema_version": 1, "latency": [{k: v for k,
                                                      v in r.items() if k != "windows"} for r in bench["latency"]]}
    (tmp_path / "v1.json").write_text(json.dumps({k: v for k, v in old.items() if k != "thermal"}))
    merged = run_cli("report", out / "bench.json", tmp_path / "v1.json", "--out", tmp_path / "report")
    assert merged.returncode == 0, merged.stderr[-2000:]


@pytest.mark.parametrize("args, fragment", [
    (["--detect-size", "-5"], "--detect-size is the longer side"),
    (["--detect-size", "16"], "32 to 8192 pixels"),
    (["--detect-every", "0"], "--detect-every is how many frames"),
    (["--duration", "-1"], "--duration takes a positive number of seconds"),
    (["--window", "0"], "--window takes a positive number of seconds"),
])
def test_run_refuses_bad_settings(model, tmp_path, args, fragment):
    proc = run_cli("run", "--model", model, "--source", tmp_path, "--out", tmp_path / "out", *args)
    assert_user_error(proc, fragment)
    assert proc.returncode == 2


def test_bench_evaluate_predict_refuse_bad_settings(model, tmp_path):
    for args, fragment in [(["--duration", "0"], "--duration takes a positive"),
                           (["--window", "-2"], "--window takes a positive"),
                           (["--duration", "5", "--rounds", "2"], "leave out --rounds")]:
        proc = run_cli("bench", model, "--out", tmp_path / "b", *args)
        assert_user_error(proc, fragment)
        assert proc.returncode == 2
    assert_user_error(run_cli("evaluate", model, "--data", tmp_path, "--labels", tmp_path / "l.csv", "--detect",
                              "--detect-size", "-1"), "--detect-size")
    assert_user_error(run_cli("predict", tmp_path, "--model", model, "--detect-size", "-1"), "--detect-size")
