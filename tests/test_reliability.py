"""Nothing lost, nothing silently wrong: odd image files, bad sidecars and specs, bad label rows, strict JSON,
same-named inputs, full disks, leftovers and a damaged image cache. Real files, real CLI runs."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_age.data.faceset import load_faces
from firmware_host.errors import EdgeAgeError
from tests.conftest import UTK64, assert_user_error, copy_slice, run_cli, sample_names

FAST_BENCH = ("--threads", "1", "--runs", "3", "--warmup", "1", "--rounds", "1")


@pytest.fixture(scope="module")
def model(converted) -> Path:
    """A real float32 .tflite with its sidecar: the tiny run's, from the session's `edge-age convert` run (these
    tests check files and errors, not accuracy)."""
    return converted / "age_gender_float32.tflite"


def strict_json(path: Path):
    """Parse ``path``, refusing NaN and infinities (which json.loads accepts by default)."""
    def refuse(token):
        raise AssertionError(f"{path} holds {token}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> Path:
    """40 real faces plus a 0-byte image, a dangling symbolic link and a truncated JPEG."""
    folder = copy_slice(UTK64, tmp_path_factory.mktemp("odd"), sample_names(UTK64, 40))
    first = sorted(folder.iterdir())[0]
    (folder / "30_1_0_20170117000000000.jpg.chip.jpg").write_bytes(b"")
    (folder / "31_0_0_20170117000000001.jpg.chip.jpg").symlink_to(folder / "gone.jpg")
    (folder / "32_0_0_20170117000000002.jpg.chip.jpg").write_bytes(first.read_bytes()[:300])
    return folder


ODD = {"30_1_0_20170117000000000.jpg.chip.jpg": "empty file (0 bytes)",
       "31_0_0_20170117000000001.jpg.chip.jpg": "cannot be read: dangling symbolic link",
       "32_0_0_20170117000000002.jpg.chip.jpg": "not a decodable image"}


def write_labels(path: Path, rows: list[str]) -> Path:
    path.write_text("file,age,gender\n" + "".join(r + "\n" for r in rows))
    return path


def test_odd_files_are_counted_unreadable_and_skipped(odd_folder, model, tmp_path):
    audit = tmp_path / "audit"
    proc = run_cli("data", "audit", odd_folder, "--out", audit)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = {u["file"]: u["reason"] for u in strict_json(audit / "audit.json")["unreadable_files"]}
    assert found == ODD

    proc = run_cli("data", "split", odd_folder, "--out", tmp_path / "split.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not set(ODD) & set((tmp_path / "split.csv").read_text().split())

    labels = write_labels(tmp_path / "labels.csv", [f"{p.name},{p.name.split('_')[0]},{p.name.split('_')[1]}"
                                                    for p in sorted(odd_folder.iterdir())])
    proc = run_cli("evaluate", model, "--data", odd_folder, "--labels", labels, "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 3 undecodable files" in proc.stdout and "do not decode" in proc.stderr
    metrics = strict_json(tmp_path / "m.json")
    assert metrics["n"] == 40 and sorted(metrics["unreadable_files"]) == sorted(ODD)

    proc = run_cli("bench", model, "--data", odd_folder, "--labels", labels, *FAST_BENCH, "--out", tmp_path / "bench")
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = strict_json(tmp_path / "bench" / "bench.json")["settings"]
    assert settings["faces_count"] == 40 and len(settings["faces_skipped"]["unreadable_files"]) == 3


# --- sidecars and baseline specs -------------------------------------------------------------------------------

def nan_pixel_scale(sidecar: dict) -> str:
    return json.dumps({**sidecar, "pixel_scale": "@"}).replace('"@"', "NaN")


def _sidecar_cases(good: dict) -> dict:
    age = good["outputs"]["age"]
    return {
        "input_size 1e9": ({**good, "input_size": 1e9}, "input_size: must be at most 4096"),
        "input_size text": ({**good, "input_size": "32"}, "input_size: must be of type integer"),
        "NaN pixel_scale": (nan_pixel_scale(good), "pixel_scale: must be a finite number, not NaN"),
        "unknown output": ({**good, "outputs": {**good["outputs"], "age": {**age, "name": "logits"}}},
                           "outputs.age.name: 'logits' is not an output of"),
        "wrong shape": ({**good, "outputs": {**good["outputs"], "age": {**age, "shape": [1, 50]}}},
                        "outputs.age.shape: [1, 50] does not match"),
        "wrong size": ({**good, "input_size": 64}, "input_size: 64 does not match the model's input"),
        "a list": ("[1, 2, 3]", "top level: must be of type object"),
        "deep nesting": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "missing key": ({k: v for k, v in good.items() if k != "outputs"}, "'outputs' is a required property"),
        "not JSON": ("{'input_size': 32", "is not valid JSON"),
    }


def test_bad_sidecars_are_refused_naming_the_field(model, tmp_path):
    from firmware_host.infer.predictor import AgeGenderModel
    good = json.loads(model.with_suffix(".json").read_text())
    for i, (case, (sidecar, fragment)) in enumerate(_sidecar_cases(good).items()):
        copy = Path(shutil.copy(model, tmp_path / f"case{i}.tflite"))
        copy.with_suffix(".json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
        with pytest.raises(EdgeAgeError) as caught:
            AgeGenderModel(copy)
        assert fragment in str(caught.value), (case, str(caught.value))
        assert "\n" not in str(caught.value)


def test_a_model_of_another_task_is_refused(model, tmp_path):
    """BlazeFace's .tflite with an age model's sidecar copied beside it, through the CLI: one line, exit 2."""
    from firmware_host.detect.detectors import find_model
    blaze = Path(shutil.copy(find_model("blazeface"), tmp_path / "detector.tflite"))
    shutil.copy(model.with_suffix(".json"), blaze.with_suffix(".json"))
    image = sorted(UTK64.iterdir())[0]
    proc = run_cli("predict", image, "--model", blaze, "--out", tmp_path / "p")
    assert_user_error(proc, "detector.tflite has no single signature: it is not an edge-age age/gender model")
    assert proc.returncode == 2
    assert_user_error(run_cli("bench", blaze, *FAST_BENCH, "--out", tmp_path / "b"), "no single signature")

    nan = Path(shutil.copy(model, tmp_path / "nan.tflite"))
    nan.with_suffix(".json").write_text(nan_pixel_scale(json.loads(model.with_suffix(".json").read_text())))
    assert_user_error(run_cli("predict", image, "--model", nan, "--out", tmp_path / "p"), "nan.json: pixel_scale")


def test_bad_baseline_specs_are_refused_naming_the_field(tmp_path):
    from edge_age.bench.baselines import read_baseline, session
    from tests.test_bench import tiny_onnx
    path, _ = tiny_onnx(tmp_path)
    spec = json.loads(path.with_suffix(".json").read_text())
    cases = {
        "input_size": ({**spec, "input_size": 1e8}, "input_size: must be at most 4096"),
        "std": ({**spec, "std": [127.5, 0, 127.5]}, "std.1: must be more than 0"),
        "decode": ({**spec, "age": {"decode": "ordinal"}}, "age.decode: must be one of"),
        "key": ({**spec, "means": 1}, "Additional properties are not allowed ('means' was unexpected)"),
    }
    for case, (bad, fragment) in cases.items():
        path.with_suffix(".json").write_text(json.dumps(bad))
        with pytest.raises(EdgeAgeError) as caught:
            read_baseline(path)
        assert fragment in str(caught.value), (case, str(caught.value))
    path.with_suffix(".json").write_text(json.dumps({**spec, "input_size": 48}))
    with pytest.raises(EdgeAgeError, match="input_size/layout: 48 px NCHW"):
        session(read_baseline(path))
    path.with_suffix(".json").write_text(json.dumps({**spec, "gender": {**spec["gender"], "column": 3}}))
    with pytest.raises(EdgeAgeError, match="gender.column: 3 is outside"):
        session(read_baseline(path))
    path.with_suffix(".json").write_text(json.dumps({**spec, "input_size": 1e8}))
    assert_user_error(run_cli("bench", path, *FAST_BENCH, "--out", tmp_path / "b"), "input_size: must be at most 4096")


# --- labels CSV and strict JSON --------------------------------------------------------------------------------

def test_bad_label_rows_stop_naming_the_line_or_are_skipped(tmp_path):
    from edge_age.eval.evaluation import read_labels
    good = ["a.jpg,30,0", "b.jpg,40,"]
    cases = {
        "quote": (['"c.jpg,20,1', "d.jpg,20,1"], "line 4: not valid CSV"),
        "age": (["c.jpg,-5,1"], "line 4: age -5 is outside 0..116"),
        "old": (["c.jpg,117,1"], "line 4: age 117 is outside 0..116"),
        "years": (["c.jpg,3.5,1"], "line 4: age '3.5' is not a whole number"),
        "gender": (["c.jpg,20,7"], "line 4: gender '7' is not 0 (male), 1 (female) or empty"),
        "duplicate": (["a.jpg,31,0"], "line 4: a.jpg is listed again (first on line 2)"),
    }
    for case, (bad, fragment) in cases.items():
        path = write_labels(tmp_path / f"{case}.csv", good + bad)
        with pytest.raises(EdgeAgeError) as caught:
            read_labels(path)
        assert fragment in str(caught.value), (case, str(caught.value))
    rows, skipped = read_labels(write_labels(tmp_path / "mixed.csv", good + ["c.jpg,-5,1", "a.jpg,31,0", "d.jpg,7,1"]),
                                skip_bad=True)
    assert rows == [("a.jpg", 30, 0, -1), ("b.jpg", 40, -1, -1), ("d.jpg", 7, 1, -1)]
    assert skipped == ["line 4: age -5 is outside 0..116", "line 5: a.jpg is listed again (first on line 2)"]
    with pytest.raises(EdgeAgeError, match=r"line 4: not valid CSV"):
        read_labels(write_labels(tmp_path / "quote2.csv", good + ['"c.jpg,20,1']), skip_bad=True)


def test_bad_labels_through_the_cli_and_strict_json(model, tmp_path):
    folder = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 12))
    names = sorted(p.name for p in folder.iterdir())
    rows = [f"{n},{n.split('_')[0]},0" for n in names]  # one gender only: the gender AUC is undefined
    labels = write_labels(tmp_path / "labels.csv", rows[:5] + [f"{names[5]},-5,0"] + rows[6:] + [rows[0]])
    assert_user_error(run_cli("evaluate", model, "--data", folder, "--labels", labels), "line 7: age -5")
    proc = run_cli("evaluate", model, "--data", folder, "--labels", labels, "--skip-bad-labels", "--json",
                   tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 2 bad label rows" in proc.stdout
    metrics = strict_json(tmp_path / "m.json")
    assert metrics["n"] == 11 and metrics["gender_auc"] is None and len(metrics["bad_label_rows"]) == 2


def test_to_json_is_strict():
    import numpy as np

    from firmware_host.files.jsonio import to_json
    text = to_json({"nan": float("nan"), "inf": -math.inf, "np": np.float32(0.5), "arr": np.array([1, 2]), "t": (1,)})
    assert json.loads(text) == {"nan": None, "inf": None, "np": 0.5, "arr": [1, 2], "t": [1]}


def test_load_faces_skips_odd_files_in_process(odd_folder):
    faces = load_faces(odd_folder, use_cache=False)
    assert len(faces.names) == 40 and dict(faces.unreadable) == ODD


# --- predict keeps every output --------------------------------------------------------------------------------

def test_predict_keeps_same_named_inputs_apart(model, tmp_path):
    from edge_age.data.scenes import make_photos
    from tests.scenes import YUNET, chips
    make_photos(chips(3, seed=1), tmp_path / "cam1", seed=1)
    make_photos(chips(3, seed=2), tmp_path / "cam2", seed=2)
    names = sorted(p.name for p in (tmp_path / "cam1").glob("*.jpg"))
    for name, photo in zip(names, sorted((tmp_path / "cam2").glob("*.jpg"))):
        photo.rename(photo.with_name(name))  # camera folders reuse names
    labels = write_labels(tmp_path / "labels.csv", [f"cam1/{names[0]},30,0", f"cam2/{names[0]},60,1"])
    out = tmp_path / "out"
    proc = run_cli("predict", tmp_path / "cam1", tmp_path / "cam2", "--model", model,
                   "--labels", labels, "--out", out, "--detector", "yunet", "--detector-model", YUNET)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(__import__("csv").DictReader((out / "faces.csv").open()))
    assert {r["file"] for r in rows} == {f"cam{c}/{n}" for c in (1, 2) for n in names}
    for r in rows:
        if int(r["face"]) >= 0:
            assert r["annotated"] == r["file"] and (out / r["annotated"]).is_file()
    first = [(out / f"cam{c}" / names[0]).read_bytes() for c in (1, 2)]
    assert first[0] != first[1]
    assert strict_json(out / "accuracy.json")["labelled_images"] == 2


# --- full disks and leftovers ----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB filesystem (tmpfs; needs root), unmounted afterwards."""
    import os
    import subprocess
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk],
                                           capture_output=True).returncode != 0:
        pytest.skip("a small tmpfs cannot be mounted here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", disk], check=True)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` until writing fails, then free ``leave`` bytes."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    if leave:
        with open(disk / "filler", "r+b") as f:
            f.truncate((disk / "filler").stat().st_size - leave)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def hidden(folder: Path) -> list[str]:
    """Leftovers: hidden files other than a report set's listing of its files."""
    return [p.name for p in folder.rglob(".*") if not p.name.endswith(".files")]


def test_full_disk_keeps_each_report_set_whole(small_disk, model, tmp_path):
    data = copy_slice(UTK64, tmp_path / "a", sample_names(UTK64, 30))
    audit, bench = small_disk / "audit", small_disk / "bench"
    assert run_cli("data", "audit", data, "--out", audit).returncode == 0
    assert run_cli("bench", model, *FAST_BENCH, "--out", bench).returncode == 0
    before = {audit: snapshot(audit), bench: snapshot(bench)}
    assert {"audit.json", "report.md", "report.html"} <= set(before[audit])
    fill(small_disk)
    (data / sorted(p.name for p in data.iterdir())[0]).unlink()  # another data set: every file would change
    assert_user_error(run_cli("data", "audit", data, "--out", audit), "No space left on device")
    assert_user_error(run_cli("bench", model, *FAST_BENCH, "--out", bench), "No space left on device")
    for folder, files in before.items():
        assert snapshot(folder) == files and not hidden(folder)


def test_run_on_a_full_disk_still_writes_its_report(small_disk, model, tmp_path):
    from edge_age.data.scenes import make_video
    from tests.scenes import YUNET, chips
    video = make_video(chips(2, seed=4), tmp_path / "faces.avi", frames=80)
    out = small_disk / "run"
    out.mkdir()
    fill(small_disk, leave=12_000)
    proc = run_cli("run", "--model", model, "--source", video, "--out", out,
                   "--jsonl", out / "frames.jsonl", "--detector", "yunet", "--detector-model", YUNET, "--threads", "1")
    assert_user_error(proc, "frames.jsonl: No space left on device")
    report = strict_json(out / "run_report.json")
    assert report["status"] == "failed" and "No space left" in report["error"] and 0 < report["frames"] < 80
    assert not (out / "frames.jsonl").exists() and not hidden(out)


def test_leftovers_of_dead_processes_are_removed(model, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from edge_age.data.scenes import make_video
    from tests.conftest import ROOT
    from tests.scenes import YUNET, chips
    video = make_video(chips(1, seed=5), tmp_path / "faces.avi", frames=400)
    out = tmp_path / "run"
    args = ["run", "--model", model, "--source", video, "--out", out,
            "--jsonl", out / "f.jsonl", "--video", out / "f.avi", "--detector", "yunet", "--detector-model", YUNET,
            "--threads", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "edge_age", *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not [p for p in out.glob(".f.jsonl.pid*.part.jsonl") if p.stat().st_size > 0] and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # as the OOM killer would
    proc.wait()
    parts = hidden(out)
    assert any(n.startswith(".f.jsonl.") for n in parts) and any(n.startswith(".f.avi.") for n in parts)
    mine = out / f".other.json.pid{os.getpid()}.x.part.json"  # a live process's partial file is left alone
    mine.write_text("{}")
    stale = out / f".staging.pid{proc.pid}.abc"
    stale.mkdir()
    proc = run_cli(*args, "--max-frames", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hidden(out) == [mine.name]


# --- the decoded-image cache -----------------------------------------------------------------------------------

def test_damaged_cache_entries_are_rebuilt(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EDGE_AGE_CACHE", str(tmp_path / "cache"))
    data = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 20))
    first = load_faces(data)
    (entry,) = (tmp_path / "cache" / "faces").iterdir()
    images = entry / "images.npy"
    for damage in (lambda: images.write_bytes(images.read_bytes()[:-100]),
                   lambda: (entry / "meta.json").write_text("{garbage"),
                   lambda: (entry / "meta.json").write_text("[]")):
        damage()
        caplog.clear()
        again = load_faces(data)
        assert not again.from_cache and "is damaged" in caplog.text
        assert again.names == first.names and (again.images == first.images).all()
        assert load_faces(data).from_cache
    assert [p.name for p in (tmp_path / "cache" / "faces").iterdir()] == [entry.name]


def test_no_cache_when_it_cannot_be_written(tmp_path, monkeypatch, caplog):
    data = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 20))
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EDGE_AGE_CACHE", str(blocker / "cache"))  # under a file: nothing can be created
    faces = load_faces(data)
    assert len(faces.names) == 20 and "carrying on without the image cache" in caplog.text
    proc = run_cli("data", "split", data, "--out", tmp_path / "split.csv", env={"EDGE_AGE_CACHE": str(blocker / "c")})
    assert proc.returncode == 0 and "edge-age: warning:" in proc.stderr, proc.stderr


def test_no_cache_on_a_full_disk(small_disk, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EDGE_AGE_CACHE", str(small_disk / "cache"))
    data = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 200))  # 2.4 MB decoded: more than the disk
    faces = load_faces(data)
    assert len(faces.names) == 200 and not faces.from_cache
    assert "cannot write the image cache" in caplog.text and not hidden(small_disk / "cache" / "faces")


def test_convert_bench_and_report_sweep_leftovers_of_dead_processes(model, tiny_run, tmp_path):
    """Leftovers named after a process that no longer runs (a hard kill) go on the next write into the folder."""
    dead = subprocess.Popen(["true"])
    dead.wait()

    def plant(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".staging.pid{dead.pid}.abc").mkdir()
        (folder / f".staging.pid{dead.pid}.abc" / "age_gender_float32.tflite").write_bytes(b"\0" * 1000)
        (folder / f".bench.json.pid{dead.pid}.xyz.part.json").write_text("{")

    convert, bench, report = tmp_path / "convert", tmp_path / "bench", tmp_path / "report"
    for folder in (convert, bench, report):
        plant(folder)
    proc = run_cli("convert", tiny_run / "model.keras", "--targets", "float32", "--out", convert)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run_cli("bench", model, *FAST_BENCH, "--out", bench).returncode == 0
    assert run_cli("report", bench / "bench.json", "--out", report).returncode == 0
    for folder in (convert, bench, report):
        assert not hidden(folder), (folder, hidden(folder))
