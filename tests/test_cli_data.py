"""``edge-age data ...`` run as a user runs it: in a subprocess, on real files."""
import json
import os
import tarfile

import pytest

from tests.conftest import UTK64, assert_user_error, copy_slice, run_cli, sample_names

COUNT_KEYS = ("images", "parsed", "malformed", "unreadable", "duplicate_groups", "near_duplicate_groups",
              "conflicting_groups")


def test_audit_writes_reports(slice64, tmp_path):
    split = tmp_path / "split.csv"
    proc = run_cli("data", "split", slice64, "--out", split, "--check")
    assert proc.returncode == 0, proc.stderr
    assert "largest share difference" in proc.stdout
    assert json.loads(split.with_suffix(".json").read_text())["groups_on_several_sides"] == 0

    out = tmp_path / "audit"
    proc = run_cli("data", "audit", slice64, "--out", out, "--split", split)
    assert proc.returncode == 0, proc.stderr
    audit = json.loads((out / "audit.json").read_text())
    for key in COUNT_KEYS:
        assert isinstance(audit[key], int), key
    assert audit["images"] == len(os.listdir(slice64))
    assert audit["malformed"] == 5 and audit["duplicate_groups"] >= 20 and audit["conflicting_groups"] >= 1
    for png in ("age_histogram", "gender_race", "age_by_gender", "split_ages"):
        assert (out / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "src='http" not in page
    conflict = audit["conflicting"][0]["files"][0]
    assert conflict in page and conflict in (out / "report.md").read_text()


def test_data_from_environment(slice64, tmp_path):
    proc = run_cli("data", "audit", "--out", tmp_path / "a", env={"EDGE_AGE_DATA": str(slice64)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a" / "audit.json").is_file()


def test_check_reads_a_split(slice64, tmp_path):
    run_cli("data", "split", slice64, "--out", tmp_path / "s.csv")
    proc = run_cli("data", "check", tmp_path / "s.csv")
    assert proc.returncode == 0 and "groups on several sides: 0" in proc.stdout


@pytest.fixture()
def bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("no images here")
    faces = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 20))
    archive = tmp_path / "faces.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(faces, arcname="UTKFace")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return {"empty": empty, "texts": texts, "archive": archive, "faces": faces, "blocker": blocker}


@pytest.mark.parametrize("case, fragments", [
    ("empty", ["no image files"]),
    ("texts", ["no image files", "1 other file(s)"]),
    ("archive", ["truncated or corrupt"]),
    ("missing", ["does not exist"]),
    ("unwritable", ["cannot write to folder"]),
    ("nodata", ["no dataset given", "EDGE_AGE_DATA"]),
    ("bad-split", ["columns"]),
])
def test_bad_input_is_one_clear_line(bad_inputs, tmp_path, case, fragments):
    args = {
        "empty": [bad_inputs["empty"]],
        "texts": [bad_inputs["texts"]],
        "archive": [bad_inputs["archive"]],
        "missing": [tmp_path / "nowhere"],
        "unwritable": [bad_inputs["faces"], "--out", bad_inputs["blocker"] / "sub"],
        "nodata": [],
        "bad-split": [bad_inputs["faces"], "--split", bad_inputs["blocker"]],
    }[case]
    if "--out" not in args:
        args += ["--out", tmp_path / "report"]
    assert_user_error(run_cli("data", "audit", *args), *fragments)


def test_failed_run_keeps_the_previous_report(bad_inputs, tmp_path):
    out = tmp_path / "report"
    assert run_cli("data", "audit", bad_inputs["faces"], "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_user_error(run_cli("data", "audit", bad_inputs["archive"], "--out", out), "truncated")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    split = tmp_path / "split.csv"
    split.write_text("keep me")
    assert_user_error(run_cli("data", "split", bad_inputs["empty"], "--out", split), "no image files")
    assert split.read_text() == "keep me"


def test_help_imports_no_tensorflow():
    import subprocess
    import sys
    code = ("import sys; from typer.testing import CliRunner; from edge_age.cli import app; "
            "r = CliRunner().invoke(app, ['data', 'audit', '--help']); assert r.exit_code == 0, r.output; "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
