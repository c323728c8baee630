"""The wheel as a user installs it: built offline, installed into a fresh virtualenv with the runtime dependencies
only (TensorFlow made unimportable), run from that virtualenv's own ``edge-age`` outside the source tree; then the
same wheel with TensorFlow visible (the [train] extra) for a default ``edge-age convert``. Nothing is downloaded:
the dependencies come from the running interpreter's site-packages through a .pth file."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import cv2
import pytest

from tests.conftest import ROOT, UTK64, UTK200, assert_user_error, copy_slice, sample_names
from tests.scenes import chips, without_tensorflow

SOURCES = ("pyproject.toml", "README.md", "calibration_data", "edge_age", "converters", "firmware_host")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree (no build/ or .egg-info left in the checkout)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", out, src], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stderr[-2000:]}\n(the build needs setuptools>=77: the [test] extra has it)"
    (built,) = out.glob("edge_age-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed (no dependencies, no index) and the running interpreter's
    site-packages appended to its path by a .pth file."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", root / "bin" / "python", "install", "--no-deps",
                           "--no-index", "-q", wheel], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    site = subprocess.run([root / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "runtime_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def clean(env: dict) -> dict:
    """``env`` on top of this environment without the source tree's PYTHONPATH, a data folder or another YuNet file."""
    drop = ("PYTHONPATH", "EDGE_AGE_DATA", "VIRTUAL_ENV", "EDGE_AGE_YUNET")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **env}


def edge_age(venv: Path, *args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """The virtualenv's own console script."""
    return subprocess.run([venv / "bin" / "edge-age", *map(str, args)], capture_output=True, text=True,
                          env=clean(env), cwd=cwd, timeout=600)


def python(venv: Path, code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, env=clean(env),
                          cwd=cwd, timeout=120)


def test_metadata_has_no_tensorflow_in_the_base_requirements(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        names = z.namelist()
    base = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base and not [line for line in base if "tensorflow" in line or "keras" in line], base
    assert any("tensorflow" in line and 'extra == "train"' in line for line in meta.splitlines())
    assert "edge_age/calibration_data/train_manifest.csv" in names
    assert any(n.startswith("edge_age/family/s/") and n.endswith(".tflite") for n in names)
    bundled = {"firmware_host/detect/models/face_detection_yunet_2023mar.onnx", "edge_age/deploy/edge-age.service",
               "firmware_host/detect/models/LICENSE.opencv_zoo-yunet-MIT"}
    assert bundled <= set(names)


def test_runtime_commands_from_the_wheel_without_tensorflow(venv, tmp_path):
    env = without_tensorflow(tmp_path / "blocked")
    assert "tensorflow is blocked" in python(venv, "import edge_age, tensorflow", env, tmp_path).stderr
    located = python(venv, "import edge_age.data.calibration as c; print(c.__file__, "
                           "c.DEFAULT_MANIFEST)", env, tmp_path)
    module, manifest = located.stdout.split()
    assert module.startswith(str(venv)) and Path(manifest).is_file() and manifest.startswith(str(venv))

    proc = edge_age(venv, "data", "video", UTK200, "--faces", "1", "--frames", "12", "--width", "320", "--height",
                    "240", "--out", tmp_path / "faces.avi", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = edge_age(venv, "run", "--source", tmp_path / "faces.avi", "--out", tmp_path / "run", "--threads", "1",
                    env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "run_report.json").read_text())
    assert report["status"] == "finished" and report["frames"] == 12 and report["faces"] > 0

    image = sorted(UTK200.iterdir())[0]
    proc = edge_age(venv, "predict", image, "--out", tmp_path / "predict", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "predict" / "faces.csv").open()))
    assert len(rows) >= 1 and int(rows[0]["face"]) == 0 and 0 <= float(rows[0]["age"]) <= 116

    proc = edge_age(venv, "bench", "s", "--threads", "1", "--runs", "3", "--warmup", "1", "--rounds", "1",
                    "--out", tmp_path / "bench", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert bench["status"] == "complete" and bench["latency"][0]["model"].startswith("age_gender_int8-qat")


def test_the_first_minutes_from_the_wheel(venv, tmp_path):
    """What a new user tries first, without TensorFlow and without naming a YuNet file: ``auto`` is the bundled
    YuNet, the Python API predicts a photo, ``predict --crops`` takes chips, a typo is an error."""
    env = {k: v for k, v in without_tensorflow(tmp_path / "blocked").items() if k != "EDGE_AGE_YUNET"}
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), cv2.copyMakeBorder(chips(1, seed=5)[0].image, 120, 120, 160, 160, cv2.BORDER_CONSTANT,
                                               value=(90, 90, 90)))
    proc = python(venv, f"""
import json, sys
import edge_age
model = edge_age.load("s")
faces = model.predict({str(photo)!r})
print(json.dumps({{"detector": model.detector.name, "yunet": str(model.detector.model),
                  "faces": [f.to_dict() for f in faces], "tf": "tensorflow" in sys.modules}}))
""", env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["detector"] == "yunet" and out["yunet"].startswith(str(venv)) and not out["tf"]
    assert len(out["faces"]) == 1 and 1 <= out["faces"][0]["age"] <= 100

    faces = copy_slice(UTK200, tmp_path / "chips", sample_names(UTK200, 20))
    proc = edge_age(venv, "predict", faces, "--crops", "--out", tmp_path / "crops", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "20 of 20 images with a face, 20 faces (--crops)" in proc.stdout
    proc = edge_age(venv, "predict", faces, "--out", tmp_path / "detected", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "detector yunet (bundled model)" in proc.stderr and "faces (yunet)" in proc.stdout

    proc = edge_age(venv, "predict", tmp_path / "nosuch.jpg", env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "edge-age: error: " in proc.stderr and "nosuch.jpg does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_default_convert_from_the_wheel_with_tensorflow(venv, tmp_path):
    """No --split: calibration from the manifest shipped in the wheel, resolved against --data."""
    manifest = python(venv, "from edge_age.data.calibration import DEFAULT_MANIFEST as m; "
                            "print(m)", {}, tmp_path).stdout.strip()
    data = tmp_path / "faces"
    data.mkdir()
    for row in list(csv.DictReader(open(manifest)))[:20]:
        shutil.copy2(UTK64 / row["file"], data / row["file"])
    proc = edge_age(venv, "convert", "--targets", "float32", "--data", data, "--calib", "20", "--out",
                    tmp_path / "convert", env={}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "convert" / "convert_report.json").read_text())
    assert report["targets"][0]["status"] == "ok" and report["calibration"].startswith("stratified calibration")
    assert (tmp_path / "convert" / "age_gender_float32.tflite").is_file()
    # a member's Keras models live in a clone's runs/members, not in the package
    proc = edge_age(venv, "convert", "s", "--targets", "float32", "--out", tmp_path / "s", env={}, cwd=tmp_path)
    assert_user_error(proc, "member s has no bundled Keras float model: 'make members'")
