"""Full disks (issue 22), on a real small tmpfs (skipped where it cannot be mounted): `evaluate --out` and `--json`,
`run --video` and `run -o` stop with one line and leave the earlier files as they were (bench --out and
data audit --out: tests/test_reliability.py). The model is the bundled member n."""
from __future__ import annotations

import pytest

from edge_age.data.scenes import make_video
from tests import test_reliability
from tests.conftest import UTK64, assert_user_error, copy_slice, run_cli, sample_names
from tests.scenes import chips
from tests.test_reliability import fill, hidden, snapshot

small_disk = test_reliability.small_disk  # the fixture: a real 2 MB tmpfs


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return copy_slice(UTK64, tmp_path_factory.mktemp("faces"), sample_names(UTK64, 20))


def test_evaluate_page_and_json_on_a_full_disk(small_disk, faces):
    page, metrics = small_disk / "page", small_disk / "metrics.json"
    proc = run_cli("evaluate", "n", "--data", faces, "--out", page, "--json", metrics)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, json_before = snapshot(page), metrics.read_bytes()
    fill(small_disk)
    for args in (("--json", metrics), ("--out", page)):
        assert_user_error(run_cli("evaluate", "s", "--data", faces, *args), "No space left on device")
    assert snapshot(page) == before and metrics.read_bytes() == json_before
    assert not hidden(page) and not hidden(small_disk)


def test_run_video_and_report_on_a_full_disk(small_disk, tmp_path):
    video = make_video(chips(1, seed=3), tmp_path / "face.avi", frames=40, size=(320, 240))
    out = small_disk / "run"
    args = ("run", "-m", "n", "-s", video, "--threads", "1", "-o", out)
    proc = run_cli(*args, "--video", out / "annotated.avi")
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = snapshot(out)
    fill(small_disk, leave=40_000)  # room for the report, not for the video
    proc = run_cli(*args, "--video", out / "annotated.avi")
    assert_user_error(proc, f"cannot write {out / 'annotated.avi'}: ", "of its 40 frames reached the file")
    assert "WARN" not in proc.stderr  # not a line of OpenCV's per frame that failed
    assert (out / "annotated.avi").read_bytes() == before["annotated.avi"]
    assert '"status": "failed"' in (out / "run_report.json").read_text()
    before = snapshot(out)
    fill(small_disk)  # no room even for the report
    assert_user_error(run_cli(*args), "run_report.json: No space left on device")
    assert snapshot(out) == before and not hidden(out)
