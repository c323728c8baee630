"""The systemd unit of the camera service (``edge_age/deploy/edge-age.service``), filled in for this install:
``edge-age run --serve`` with the user's run options, from boot, restarted on failure, stopped by SIGTERM."""
from __future__ import annotations

import getpass
import shlex
import shutil
import sys
from pathlib import Path

UNIT_TEMPLATE = Path(__file__).resolve().parent / "deploy" / "edge-age.service"
FLAG = "--systemd-unit"
DEFAULT_SERVE = "0.0.0.0:8080"


def command() -> list[str]:
    """How this install's ``edge-age`` is started: its console script beside the interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "edge-age"
    if script.is_file():
        return [str(script)]
    found = shutil.which("edge-age")
    return [found] if found else [sys.executable, "-m", "edge_age"]


def run_arguments(argv: list[str]) -> list[str]:
    """The options of ``edge-age ... run ...`` in ``argv`` without ``--systemd-unit``, with ``--serve`` added (on
    every interface, port 8080) when they have none."""
    args = argv[argv.index("run") + 1:] if "run" in argv else []
    args = [a for a in args if a != FLAG]
    if not any(a == "--serve" or a.startswith("--serve=") for a in args):
        args += ["--serve", DEFAULT_SERVE]
    return args


def systemd_unit(argv: list[str], *, workdir: Path | None = None, user: str | None = None) -> str:
    """The unit text for ``edge-age run`` with the options in ``argv`` (``sys.argv[1:]`` of the command)."""
    exec_start = " ".join(shlex.quote(a) for a in [*command(), "run", *run_arguments(argv)]).replace("%", "%%")
    return UNIT_TEMPLATE.read_text(encoding="utf-8").format(
        exec_start=exec_start, workdir=workdir or Path.cwd(), user=user or getpass.getuser())
