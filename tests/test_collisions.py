"""Two writers on one folder (issue 22): two `evaluate --out`, `bench --out` or `convert --out` at once leave one
complete set from one of them, never a mix; the other stops with a one-line error (bench, convert) or waits
(a report set). A lock that kill -9 cannot leave stale. Real CLI subprocesses, the bundled members' files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_host.files.atomic import LOCK
from tests.conftest import ROOT, UTK64, assert_user_error, copy_slice, run_cli, sample_names

FAMILY = ROOT / "edge_age" / "family"
FAST_BENCH = ("--threads", "1", "--runs", "3", "--warmup", "1", "--rounds", "1")
HOLD = "import sys, time\nfrom firmware_host.files import atomic\nwith atomic.locked(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "edge_age", *map(str, args)]


def popen(*args, log: Path) -> subprocess.Popen:
    """``edge-age ARGS`` started in the background, its stderr into ``log`` (so it can be watched)."""
    return subprocess.Popen(cli(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)


def finished(proc: subprocess.Popen, log: Path) -> subprocess.CompletedProcess:
    out, _ = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, log.read_text())


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock of a folder (started and killed by the test)."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def wait_for(log: Path, text: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return copy_slice(UTK64, tmp_path_factory.mktemp("faces"), sample_names(UTK64, 24))


def test_a_held_folder_stops_bench_and_convert_with_one_line_then_kill_9_frees_it(holder, tmp_path):
    out = tmp_path / "out"
    first = holder(out)
    model = FAMILY / "n" / "age_gender_int8-qat.tflite"
    for args in (("bench", model, *FAST_BENCH), ("convert", ROOT / "edge_age" / "reference" / "model.keras",
                                                 "--targets", "float32")):
        proc = run_cli(*args, "--out", out)
        assert_user_error(proc, f"{out} is being written by another edge-age process (pid {first.pid})",
                          "give another --out")
    assert os.listdir(out) == [LOCK]  # nothing of either was written
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / LOCK).exists()  # kill -9 leaves the file, but not the lock
    proc = run_cli("bench", model, *FAST_BENCH, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"bench.json", "bench.md", "bench.html"} <= set(os.listdir(out)) and LOCK not in os.listdir(out)


def test_a_report_set_waits_for_the_holder_and_kill_9_lets_it_go_on(holder, faces, tmp_path):
    out = tmp_path / "page"
    first = holder(out)
    log = tmp_path / "evaluate.log"
    proc = popen("evaluate", "n", "--data", faces, "--out", out, log=log)
    wait_for(log, f"waiting for another edge-age process (pid {first.pid}) to finish writing {out}", proc)
    first.send_signal(signal.SIGKILL)
    done = finished(proc, log)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert {"report.html", "report.md"} <= set(os.listdir(out)) and LOCK not in os.listdir(out)


def test_two_evaluate_pages_at_once_leave_one_whole_set(faces, tmp_path):
    out, logs = tmp_path / "page", [tmp_path / "n.log", tmp_path / "m.log"]
    procs = [popen("evaluate", m, "--data", faces, "--out", out, log=log) for m, log in zip("nm", logs)]
    done = [finished(p, log) for p, log in zip(procs, logs)]
    for d in done:  # the later one waited for the first, then replaced its page by its own
        assert d.returncode == 0 and "Traceback" not in d.stderr, d.stderr[-2000:]
    assert_one_set(out, [str(FAMILY / m) for m in "nm"], "report")


def assert_one_set(out: Path, marks: list[str], stem: str) -> None:
    """``out``'s page (.md and .html) names exactly one of ``marks``, the same in both; no leftovers."""
    md, html = (out / f"{stem}.md").read_text(), (out / f"{stem}.html").read_text().replace("<wbr>", "")
    (shown,) = [m for m in marks if m in md]
    assert shown in html and not any(m in html for m in marks if m != shown)
    assert not [p for p in os.listdir(out) if p.startswith(".") and not p.endswith(".files")]
    return shown


def test_two_benches_at_once_leave_one_whole_set(tmp_path):
    out, logs = tmp_path / "bench", [tmp_path / "a.log", tmp_path / "b.log"]
    names = ["first-bench-device", "second-bench-device"]
    procs = [popen("bench", FAMILY / "n" / "age_gender_int8-qat.tflite", *FAST_BENCH, "--name", name, "--out", out,
                   log=log) for name, log in zip(names, logs)]
    done = [finished(p, log) for p, log in zip(procs, logs)]
    assert any(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done]
    for d in done:
        if d.returncode:  # the later one stops at once, with one line, having written nothing
            assert_user_error(d, "is being written by another edge-age process", "give another --out")
    shown = assert_one_set(out, names, "bench")
    bench = json.loads((out / "bench.json").read_text())
    assert bench["status"] == "complete" and bench["device"]["name"] == shown
