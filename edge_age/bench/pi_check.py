"""``make pi-check``: the wheel on Linux arm64 (a Raspberry Pi's Debian bookworm), emulated by qemu-user-static,
against the same commands on this x86 host.

The wheel is built from the checkout; a bookworm arm64 root filesystem is made once from Debian's packages
(``debootstrap``, kept under ``--root`` for the next run); the aarch64 wheels of the runtime dependencies are
downloaded on the host and installed with the wheel in a virtualenv inside it (``chroot``). Both sides then run
``evaluate`` of every member's int8-qat file on ``FACES`` faces of the test side (``--per-face``), ``predict`` on
``PHOTOS`` photos and ``bench s``; ``pi-check.json`` and ``pi-check.md`` compare them face by face. Needs root.

    python -m edge_age.bench.pi_check --split runs/split.csv --data CHIPS --photos PHOTOS_200 --yunet ONNX
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.csvio import read_rows
from firmware_host.files.jsonio import read_json, write_json
from firmware_host.logs import STATUS

log = logging.getLogger("edge_age.bench.pi_check")  # not __name__: run as __main__ by python -m

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64", "any")
EXTRAS = "serve"                       # the runtime's optional part that a device uses
FACES, PHOTOS, BENCH_RUNS = 500, 20, 20
MAE_TOLERANCE = 0.1                    # years: the largest accepted |MAE arm64 - MAE x86| of a member
SIDES = ("x86", "arm64")
INSIDE = "/opt/edge-age"               # the wheels and the virtualenv inside the root filesystem
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",  # also finds chroot
              "HOME": "/root", "LANG": "C.UTF-8"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
CHECKOUT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "calibration_data", "edge_age", "converters", "firmware_host")
EMULATION_NOTE = ("Latency under qemu emulation says nothing about a device (every instruction is translated): "
                  "bench ran on both sides, its times are not reported.")
VERSIONS = ("import json, platform; from importlib.metadata import version; print(json.dumps({'machine': "
            "platform.machine(), 'python': platform.python_version(), 'ai-edge-litert': version('ai-edge-litert'), "
            "'numpy': version('numpy'), 'opencv': version('opencv-python-headless')}))")


# ---- comparison (pure: per-face outputs in, figures out) ----

def spread(values) -> dict:
    """Median, 99th percentile and maximum of the absolute values."""
    a = np.abs(np.asarray(values, dtype=float))
    if not a.size:
        return {"median": None, "p99": None, "max": None}
    return {"median": float(np.median(a)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def compare_faces(x86: list[dict], arm64: list[dict]) -> dict:
    """One member's ``evaluate --per-face`` rows of both sides, matched by file: MAE of each, the spread of the
    per-face age and P(female) differences, and whether the MAEs agree within ``MAE_TOLERANCE``."""
    a, b = ({r["file"]: r for r in rows} for rows in (x86, arm64))
    if set(a) != set(b):
        raise EdgeAgeError(f"the two sides scored different faces ({len(set(a) ^ set(b))} differ)")
    files = sorted(a)
    true = np.array([float(a[f]["true_age"]) for f in files])
    age = {side: np.array([float(rows[f]["age"]) for f in files]) for side, rows in zip(SIDES, (a, b))}
    female = {side: np.array([float(rows[f]["female"]) for f in files]) for side, rows in zip(SIDES, (a, b))}
    mae = {side: float(np.mean(np.abs(age[side] - true))) for side in SIDES}
    difference = mae["arm64"] - mae["x86"]
    return {"faces": len(files), "mae": mae, "mae_difference": difference,
            "age_difference": spread(age["arm64"] - age["x86"]),
            "female_difference": spread(female["arm64"] - female["x86"]),
            "pass": bool(abs(difference) <= MAE_TOLERANCE)}


def compare_predictions(x86: list[dict], arm64: list[dict]) -> dict:
    """``predict``'s faces.csv rows of both sides: faces found, and for the faces both found (same photo, same
    index) the spread of the age, P(female) and box differences."""
    def faces(rows):
        return {(r["file"], int(r["face"])): r for r in rows if int(r["face"]) >= 0}
    a, b = faces(x86), faces(arm64)
    both = sorted(set(a) & set(b))
    box = [max(abs(float(a[k][c]) - float(b[k][c])) for c in "xywh") for k in both]
    return {"photos": len({r["file"] for r in x86}), "faces": {"x86": len(a), "arm64": len(b)}, "matched": len(both),
            "age_difference": spread([float(b[k]["age"]) - float(a[k]["age"]) for k in both]),
            "female_difference": spread([float(b[k]["female"]) - float(a[k]["female"]) for k in both]),
            "box_difference_px": spread(box)}


def compare(out: Path, members: list[str]) -> dict:
    """The comparison of the outputs that both sides left in ``out/x86`` and ``out/arm64``."""
    def rows(side: str, name: str) -> list[dict]:
        return read_rows(out / side / name, f"{side} output")
    result = {"members": {m: compare_faces(rows("x86", f"faces_{m}.csv"), rows("arm64", f"faces_{m}.csv"))
                          for m in members},
              "predict": compare_predictions(rows("x86", "predict/faces.csv"), rows("arm64", "predict/faces.csv")),
              "bench": {side: read_json(out / side / "bench/bench.json", f"{side} bench")["status"] for side in SIDES},
              "mae_tolerance": MAE_TOLERANCE, "emulation_note": EMULATION_NOTE}
    result["pass"] = all(m["pass"] for m in result["members"].values())
    return result


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    """The report as Markdown."""
    env = result.get("environment", {})
    lines = ["# pi-check: the wheel on Linux arm64 (emulated) against x86", ""]
    for side in SIDES:
        if side in env:
            e = env[side]
            lines.append(f"- {side}: {e['machine']}, Python {e['python']}, ai-edge-litert {e['ai-edge-litert']}, "
                         f"numpy {e['numpy']}, OpenCV {e['opencv']}")
    if "arm64" in env:
        lines.append(f"- arm64 is Debian {SUITE} under qemu-user-static; x86 is this host's environment")
    if "inputs" in result:
        lines.append(f"- {result['inputs']}")
    lines += ["", f"## evaluate: each member's int8-qat file (MAE must agree within {result['mae_tolerance']} years)",
              "", "|Δ| are per face, arm64 against x86.", "",
              "| member | faces | MAE x86 | MAE arm64 | ΔMAE | \\|Δage\\| median | p99 | max "
              "| \\|ΔP(female)\\| median | p99 | max | verdict |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, m in result["members"].items():
        a, g = m["age_difference"], m["female_difference"]
        lines.append(f"| {name} | {m['faces']} | {m['mae']['x86']:.3f} | {m['mae']['arm64']:.3f} "
                     f"| {m['mae_difference']:+.3f} | {_f(a['median'])} | {_f(a['p99'])} | {_f(a['max'])} "
                     f"| {_f(g['median'], 4)} | {_f(g['p99'], 4)} | {_f(g['max'], 4)} "
                     f"| {'pass' if m['pass'] else 'FAIL'} |")
    p = result["predict"]
    a, g, box = p["age_difference"], p["female_difference"], p["box_difference_px"]
    lines += ["", f"## predict on {p['photos']} photos (YuNet)", "",
              "| faces x86 | faces arm64 | matched | \\|Δage\\| median | p99 | max | \\|ΔP(female)\\| max "
              "| box \\|Δ\\| max (px) |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {p['faces']['x86']} | {p['faces']['arm64']} | {p['matched']} | {_f(a['median'])} | {_f(a['p99'])} "
              f"| {_f(a['max'])} | {_f(g['max'], 4)} | {_f(box['max'], 1)} |",
              "", "## bench s", "", f"Status: x86 {result['bench']['x86']}, arm64 {result['bench']['arm64']}. "
              f"{result['emulation_note']}", "",
              f"**{'PASS' if result['pass'] else 'FAIL'}**: " + ", ".join(
                  f"{n} {'pass' if m['pass'] else 'FAIL'} ({m['mae_difference']:+.3f} years)"
                  for n, m in result["members"].items()), ""]
    return "\n".join(lines)


def write_report(result: dict, out: Path) -> Path:
    """``pi-check.json`` and ``pi-check.md`` in ``out``."""
    write_json(out / "pi-check.json", result)
    return atomic.write_text(out / "pi-check.md", markdown(result))


# ---- the steps ----

def run(args: list, what: str, *, log_file: Path | None = None, env: dict | None = None) -> str:
    """Run ``args``; its output goes to ``log_file`` (else is returned). A failure is one line naming ``what``."""
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    except OSError as exc:
        raise EdgeAgeError(f"{what}: cannot start {args[0]}: {exc.strerror or exc}") from None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "no message")
        where = f"; see {log_file}" if log_file is not None else ""
        raise EdgeAgeError(f"{what} failed (exit {proc.returncode}): {last.strip()}{where}")
    return proc.stdout


def check_host() -> None:
    """Root, debootstrap and qemu-user-static are here, and qemu-aarch64 is registered with binfmt_misc."""
    if os.geteuid() != 0:
        raise EdgeAgeError("pi-check needs root (debootstrap, chroot, binfmt_misc): run it as root")
    if not shutil.which("debootstrap") or not QEMU_CONF.is_file():
        raise EdgeAgeError("pi-check needs debootstrap and qemu-user-static: apt-get install -y qemu-user-static "
                           "debootstrap")
    entry = BINFMT / "qemu-aarch64"
    if entry.exists() and entry.read_text().startswith("enabled"):
        return
    try:
        if not (BINFMT / "register").exists():
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], "mounting binfmt_misc")
        if entry.exists():
            entry.write_text("1")
        else:
            line = next(t for t in QEMU_CONF.read_text().splitlines() if t.strip() and not t.startswith("#"))
            (BINFMT / "register").write_text(line)
    except (OSError, EdgeAgeError) as exc:
        raise EdgeAgeError(f"cannot register qemu-aarch64 with binfmt_misc ({exc}): arm64 programs cannot run "
                           "here") from None


def build_wheel(dist: Path) -> Path:
    """The wheel, built offline from a copy of the checkout's sources (nothing left in the checkout)."""
    shutil.rmtree(dist, ignore_errors=True)
    with tempfile.TemporaryDirectory() as src:
        for name in SOURCES:
            source = CHECKOUT / name
            if source.is_dir():
                shutil.copytree(source, Path(src, name), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(source, Path(src, name))
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
             dist, src], "building the wheel")
    (wheel,) = dist.glob("edge_age-*.whl")
    return wheel


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == prefix or line.split()[1].startswith(prefix + "/")]


def root_filesystem(root: Path, mirror: str, log_file: Path) -> Path:
    """A Debian arm64 root filesystem with Python at ``root``: kept from an earlier run, or made by debootstrap
    (about 4 minutes) into a ``.partial`` folder renamed when complete."""
    if (root / "usr/bin/python3").exists():
        log.info("reusing the arm64 root filesystem %s", root, extra=STATUS)
        return root
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        if _mounts_under(partial):
            raise EdgeAgeError(f"{partial} (an unfinished root filesystem) has mounts inside: unmount them first")
        shutil.rmtree(partial)
    try:
        urllib.request.urlopen(f"{mirror}/dists/{SUITE}/Release", timeout=30).close()
    except OSError as exc:
        raise EdgeAgeError(f"cannot reach Debian's mirror {mirror} ({exc}): the root filesystem is made from its "
                           "packages") from None
    log.info("making a Debian %s arm64 root filesystem in %s (debootstrap, about 4 minutes)", SUITE, root,
             extra=STATUS)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv", SUITE, partial,
         mirror], "debootstrap", log_file=log_file)
    partial.rename(root)
    return root


def chroot(root: Path, *args) -> list:
    return ["chroot", root, *args]


def install(root: Path, wheel: Path, wheels: Path, log_dir: Path) -> None:
    """The aarch64 wheels of the runtime (``pip download`` on the host, for the root's Python) and the wheel,
    installed without an index into a virtualenv inside ``root``."""
    version = run(chroot(root, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"),
                  "running Python inside the arm64 root filesystem", env=CHROOT_ENV).strip()
    log.info("downloading the aarch64 wheels for Python %s", version, extra=STATUS)
    run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", version,
         "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", wheels, f"{wheel}[{EXTRAS}]"],
        "downloading the aarch64 wheels (pip download: is PyPI reachable?)", log_file=log_dir / "download.log")
    for old in wheels.glob("edge_age-*.whl"):  # the wheel itself is installed from dist, never from a stale copy
        old.unlink()
    inside = root / INSIDE.lstrip("/")
    shutil.rmtree(inside / "wheels", ignore_errors=True)
    shutil.copytree(wheels, inside / "wheels")
    shutil.copy2(wheel, inside / "wheels" / wheel.name)
    pip = f"{INSIDE}/venv/bin/pip"
    if not (inside / "venv/bin/pip").exists():
        run(chroot(root, "python3", "-m", "venv", f"{INSIDE}/venv"), "making the virtualenv inside the root",
            env=CHROOT_ENV)
    log.info("installing the wheel and its dependencies inside the arm64 root filesystem", extra=STATUS)
    target = f"{INSIDE}/wheels/{wheel.name}"
    run(chroot(root, pip, "install", "--no-index", "--find-links", f"{INSIDE}/wheels", f"{target}[{EXTRAS}]"),
        "installing the dependencies inside the root", log_file=log_dir / "install.log", env=CHROOT_ENV)
    run(chroot(root, pip, "install", "--no-index", "--no-deps", "--force-reinstall", target),
        "installing the wheel inside the root", log_file=log_dir / "install-wheel.log", env=CHROOT_ENV)


def stage_inputs(work: Path, split: Path, data: Path, photos: Path, yunet: Path) -> str:
    """Copies of ``FACES`` chips of the split's test side (spread over it) with labels.csv, ``PHOTOS`` photos of
    the same side and the YuNet file in ``work``; what was chosen, in words."""
    from edge_age.data.split import read_split
    rows = read_split(split).side("test")
    if not rows:
        raise EdgeAgeError(f"split file {split} has no test side")
    chosen = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, min(FACES, len(rows))).astype(int))]
    in_photos = [r for r in rows if (photos / r.file).is_file()]
    chosen_photos = [in_photos[i] for i in np.unique(np.linspace(0, len(in_photos) - 1,
                                                                 min(PHOTOS, len(in_photos))).astype(int))]
    if not chosen_photos:
        raise EdgeAgeError(f"no photo of the test side of {split} is in {photos}")
    for folder, source, picked in (("faces", data, chosen), ("photos", photos, chosen_photos)):
        (work / folder).mkdir()
        for r in picked:
            if not (source / r.file).is_file():
                raise EdgeAgeError(f"{source / r.file} is missing: --data must hold the split's faces")
            shutil.copy2(source / r.file, work / folder / r.file)
    (work / "labels.csv").write_text("file,age,gender\n" + "".join(f"{r.file},{r.age},{r.gender}\n"
                                                                  for r in chosen), encoding="utf-8")
    if not yunet.is_file():
        raise EdgeAgeError(f"YuNet file {yunet} is missing (--yunet)")
    shutil.copy2(yunet, work / "yunet.onnx")
    return (f"{len(chosen)} faces spread over the {len(rows)} of the test side of {split}; {len(chosen_photos)} "
            f"photos of that side from {photos}")


@dataclass
class Side:
    """Where the commands run: ``python`` starts this side's interpreter, ``work`` is the shared temporary
    folder as this side sees it."""

    name: str
    python: list
    edge_age: list
    work: str
    env: dict


def commands(work: str, members: list[str]) -> list[tuple[str, list[str]]]:
    """(name, arguments) of the ``edge-age`` commands each side runs, writing into ``work/<side>``."""
    def out(name):
        return f"{work}/{{side}}/{name}"
    found = [(f"evaluate_{m}", ["evaluate", m, "--data", f"{work}/faces", "--labels", f"{work}/labels.csv",
                                "--json", out(f"evaluate_{m}.json"), "--per-face", out(f"faces_{m}.csv")])
             for m in members]
    return found + [("predict", ["predict", f"{work}/photos", "--detector", "yunet", "--detector-model",
                                 f"{work}/yunet.onnx", "--out", out("predict")]),
                    ("bench", ["bench", "s", "--runs", str(BENCH_RUNS), "--out", out("bench")])]


KEPT = ("evaluate_*.json", "faces_*.csv", "predict/faces.csv", "predict/faces.json", "bench/bench.json",
        "bench/bench.md")


def run_side(side: Side, members: list[str], work: Path, out: Path) -> dict:
    """Every command on ``side``; its tables (not the annotated photos) copied to ``out/<side>``; its versions."""
    (work / side.name).mkdir()
    target = out / side.name
    shutil.rmtree(target, ignore_errors=True)
    for name, args in commands(side.work, members):
        log.info("%s: edge-age %s", side.name, name.replace("_", " "), extra=STATUS)
        run([*side.edge_age, *(a.format(side=side.name) for a in args)], f"{side.name}: edge-age {args[0]}",
            log_file=target / f"{name}.log", env=side.env)
    for pattern in KEPT:
        for path in (work / side.name).glob(pattern):
            dest = target / path.relative_to(work / side.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    return json.loads(run([*side.python, "-c", VERSIONS], f"{side.name}: reading versions", env=side.env))


def pi_check(*, split: Path, data: Path, photos: Path, yunet: Path, out: Path, root: Path,
             mirror: str = MIRROR) -> dict:
    """Every step; the comparison, also written to ``out/pi-check.json`` and ``pi-check.md``."""
    from edge_age.members import members as bundled
    check_host()
    out.mkdir(parents=True, exist_ok=True)
    log.info("building the wheel", extra=STATUS)
    wheel = build_wheel(out / "dist")
    root = root_filesystem(root, mirror, out / "debootstrap.log")
    install(root, wheel, out / "wheels", out)
    names = [m.name for m in bundled()]
    work = Path(tempfile.mkdtemp(prefix="pi-check-", dir=root / "tmp"))
    try:
        inputs = stage_inputs(work, split, data, photos, yunet)
        host_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGE_")}
        sides = [Side("x86", [sys.executable], [Path(sys.executable).with_name("edge-age")], str(work), host_env),
                 Side("arm64", chroot(root, f"{INSIDE}/venv/bin/python"), chroot(root, f"{INSIDE}/venv/bin/edge-age"),
                      f"/tmp/{work.name}", CHROOT_ENV)]
        environment = {side.name: run_side(side, names, work, out) for side in sides}
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the copied faces and photos never stay
    result = {**compare(out, names), "environment": environment, "inputs": inputs, "wheel": wheel.name}
    write_report(result, out)
    return result


def main(argv: list[str] | None = None) -> None:
    from firmware_host.errors import user_message
    from firmware_host.logs import to_terminal

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, default=Path("runs/split.csv"))
    parser.add_argument("--data", type=Path, required=True, help="The 64x64 chips of the split.")
    parser.add_argument("--photos", type=Path, required=True, help="The 200x200 photos (for predict).")
    parser.add_argument("--yunet", type=Path, required=True, help="YuNet's .onnx file (predict's detector).")
    parser.add_argument("--out", type=Path, default=Path("runs/pi-check"))
    parser.add_argument("--root", type=Path, help="The arm64 root filesystem, made once [default: OUT/bookworm-arm64].")
    parser.add_argument("--mirror", default=MIRROR, help="Debian mirror for debootstrap.")
    args = parser.parse_args(argv)
    to_terminal()
    try:
        result = pi_check(split=args.split, data=args.data, photos=args.photos, yunet=args.yunet, out=args.out,
                          root=args.root or args.out / "bookworm-arm64", mirror=args.mirror)
    except (EdgeAgeError, OSError) as exc:
        print(f"pi-check: error: {user_message(exc)}", file=sys.stderr)
        sys.exit(2)
    print(markdown(result))
    print(f"wrote {args.out}/pi-check.md and pi-check.json")
    sys.exit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
