"""Shared fixtures: real data from ../shared (integration tests only), an isolated image cache, CLI runs in a
subprocess."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
UTK64 = SHARED / "data" / "utkface64"
UTK200 = SHARED / "data" / "utkface_part1_200"
IMAGENET = SHARED / "models" / "imagenet" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
TINY = ["--preset", "tiny", "--input-size", "32"]

os.environ["EDGE_AGE_CACHE"] = tempfile.mkdtemp(prefix="edge-age-test-cache-")
os.environ.pop("EDGE_AGE_DATA", None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_finish(session):
    """The integration tests need ../shared: stop at once without it (the unit tier in tests/unit does not)."""
    if not UTK64.is_dir() and any(UNIT not in Path(item.path).parents for item in session.items):
        pytest.exit(f"the shared data folder {UTK64} is missing: tests need ../shared beside the project", returncode=3)


# The fixtures that train or convert; the test files that use them, directly or through another fixture, run last.
TRAINED = frozenset({"tiny_run", "converted", "converted_without_data"})
PREBUILT = "EDGE_AGE_TESTS_PREBUILT"  # set by the controller when it makes them itself (pytest_sessionstart)


def pytest_collection_modifyitems(config, items):
    """On pytest-xdist workers (`make test`: --dist loadfile --no-loadscope-reorder, so each file runs whole on one
    worker, in this order): every file that needs none of the trained model first, then the files that need it.
    When the controller does not make them itself, the first file that needs them goes first: one worker trains
    and converts while the other runs what does not wait for that."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    trained = {item.path for item in items if TRAINED & set(item.fixturenames)}
    first = None if os.environ.get(PREBUILT) else next((item.path for item in items if item.path in trained), None)
    items.sort(key=lambda item: 0 if item.path == first else 2 if item.path in trained else 1)  # stable sort


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist starts the workers, so that they inherit PREBUILT
def pytest_sessionstart(session):
    """On the controller of a whole-suite pytest-xdist run (`make test`): make the session's trained model and its
    two conversions from the start, the conversions side by side, in threads beside the workers, which meanwhile
    run the tests that need none of it."""
    config = session.config
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "numprocesses", 0) or \
            not UTK64.is_dir() or not whole_suite(config.invocation_params.args):
        return
    os.environ[PREBUILT] = "1"
    root = config._tmp_path_factory.getbasetemp()
    for name in ("convert", "convert_nodata"):
        threading.Thread(target=_made_if_possible, args=(root, name), name=f"make-{name}", daemon=True).start()


def whole_suite(args) -> bool:
    """Whether pytest's command line selects every test (no path, node id or -k among ``args``)."""
    return "-k" not in args and not any(Path(a.split("::")[0]).exists() for a in map(str, args)
                                        if not a.startswith("-"))


def _made_if_possible(root: Path, name: str) -> None:
    try:
        made(root, name)
    except Exception:  # the fixture that needs it makes it again, and reports the failure
        pass


def sample_names(folder: Path, n: int, extra: tuple[str, ...] = ()) -> list[str]:
    """Every k-th file name of ``folder`` (deterministic), plus ``extra``."""
    names = sorted(os.listdir(folder))
    step = max(len(names) // n, 1)
    return sorted(set(names[::step][:n]) | set(extra))


def copy_slice(folder: Path, dest: Path, names: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(folder / name, dest / name)
    return dest


# Real quirks of utkface64: malformed names and byte-identical pairs (one with conflicting labels).
MALFORMED64 = ("24_0_1_20170116220224657 .jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg",
               "39_1_20170116174525125.jpg.chip.jpg", "14_0_0_2017011022340900.jpg.chip.jpg",
               "28_1_2_201701161846515488.jpg.chip.jpg")


@pytest.fixture(scope="session")
def slice64(tmp_path_factory) -> Path:
    """About 300 real 64x64 faces, including malformed names and duplicate groups."""
    from tests.dupes import duplicate_groups
    groups = duplicate_groups(UTK64)[:20]
    extra = MALFORMED64 + tuple(n for g in groups for n in g)
    return copy_slice(UTK64, tmp_path_factory.mktemp("utk64"), sample_names(UTK64, 260, extra))


CASES = os.environ.get("EDGE_AGE_CASES")  # a JSON-lines file: every CLI run's outcome, for a table of the cases


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``edge-age ARGS`` in a subprocess, as a user would (and note its outcome in $EDGE_AGE_CASES if set)."""
    proc = subprocess.run([sys.executable, "-m", "edge_age", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=600)
    if CASES:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-age: error:")]
        shown = [a.name if isinstance(a, Path) and a.is_absolute() else str(a) for a in args]
        with open(CASES, "a", encoding="utf-8") as log:
            log.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                                  "command": "edge-age " + " ".join(shown), "exit": proc.returncode,
                                  "message": errors[0] if errors else "", "traceback": "Traceback" in proc.stderr})
                      + "\n")
    return proc


def ctrl_c_enabled() -> None:
    """For Popen(preexec_fn=...): a child of a background job inherits SIGINT ignored; restore Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A clear one-line error, a non-zero exit and no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("edge-age: error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def shared_root(tmp_path_factory) -> Path:
    """The run's folder: the session's artefacts are made there once for every pytest-xdist worker."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # a worker's is inside the run's


def made(root: Path, name: str) -> Path:
    """``root/name``, made by ``MADE[name]`` once per test run, after what it needs: the first process or thread
    that needs it makes it while the others wait, then they all share it."""
    make, needs = MADE[name]
    for need in needs:
        made(root, need)
    path, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            make(path, root)
            done.touch()
    return path


def console_of(folder: Path) -> Path:
    """The file beside a session artefact's folder that holds what its command printed."""
    return folder.with_name(folder.name + ".console.txt")


def _faces(path: Path, root: Path) -> None:
    copy_slice(UTK64, path, sample_names(UTK64, 160))


def _split(path: Path, root: Path) -> None:
    path.mkdir(parents=True)
    proc = run_cli("data", "split", root / "train64", "--out", path / "split.csv", "--train", "0.6", "--val", "0.2",
                   "--test", "0.2")
    assert proc.returncode == 0, proc.stderr


def _tiny(path: Path, root: Path) -> None:
    proc = run_cli("train", "--data", root / "train64", "--split", root / "split" / "split.csv", "--out", path, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _convert(path: Path, root: Path) -> None:
    proc = run_cli("convert", root / "tiny" / "model.keras", "--data", root / "train64", "--split",
                   root / "split" / "split.csv", "--out", path, "--calib", "30", "--threshold", "100",
                   "--debug-images", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    console_of(path).write_text(proc.stdout + proc.stderr)


def _convert_nodata(path: Path, root: Path) -> None:
    proc = run_cli("convert", root / "tiny" / "model.keras", "--targets", "float32,int8,int8-qat", "--out", path)
    assert proc.returncode == 0, proc.stderr[-2000:]


# The session's artefacts: how each is made and what it needs first.
MADE = {"train64": (_faces, ()), "split": (_split, ("train64",)), "tiny": (_tiny, ("split",)),
        "convert": (_convert, ("tiny",)), "convert_nodata": (_convert_nodata, ("tiny",))}


# The session's data, trained model and conversions, each made once per run (see made). A test that needs some real
# .tflite, not the tiny run's, takes a bundled member (member_tflite).
@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    """160 real faces for training and conversion tests."""
    return made(shared_root(tmp_path_factory), "train64")


@pytest.fixture(scope="session")
def split(tmp_path_factory):
    """A split of those faces: 60% train, 20% val, 20% test."""
    return made(shared_root(tmp_path_factory), "split") / "split.csv"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real `edge-age train` run of a tiny MobileNetV2 on those faces: one float epoch, one QAT epoch."""
    return made(shared_root(tmp_path_factory), "tiny")


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Every target of the tiny run, from one real `edge-age convert` run (threshold off: the model is barely
    trained); what it printed is in ``console_of(converted)``."""
    return made(shared_root(tmp_path_factory), "convert")


@pytest.fixture(scope="session")
def converted_without_data(tmp_path_factory):
    """The tiny run converted without --data (float32, int8, int8-qat): one real `edge-age convert` run. int8
    needs calibration faces, so it is skipped."""
    return made(shared_root(tmp_path_factory), "convert_nodata")


@pytest.fixture(scope="session")
def member_tflite() -> Path:
    """A bundled member's int8-qat file with its sidecar (member n, 48 px): a real model that costs no training
    and no conversion, for tests that need a .tflite, not a particular one."""
    from edge_age.members import member
    return member("n").tflite("int8-qat")
