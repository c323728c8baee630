"""Atomic file output: a half-written file never replaces a good one."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Collection, Iterator

from firmware_host.errors import EdgeAgeError

_UMASK = os.umask(0)
os.umask(_UMASK)


def writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise EdgeAgeError(f"cannot write to folder {path}: {exc.strerror or exc}") from None
    return path


def begin(path: str | os.PathLike) -> Path:
    """A new temporary file beside ``path`` (same last suffix), for :func:`commit` or :func:`discard`."""
    path = Path(path)
    writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part" + path.suffix)
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, path: str | os.PathLike) -> None:
    """Move a finished temporary file into place in one step."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def discard(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same last suffix); move it into place only on success."""
    tmp = begin(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike, owned: Collection[str]) -> Iterator[Path]:
    """Yield an empty folder beside ``path`` to fill; on success it takes ``path``'s place as one set.

    ``owned`` names the files this writer makes: those of an older ``path`` go with it, any other entry
    (a ``--json`` file, notes) is carried over. On failure the staging folder is removed, ``path`` untouched.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeAgeError(f"{path} is a file, not a folder")
    writable_dir(path.parent)
    stage = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".staging"))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    os.chmod(stage, 0o777 & ~_UMASK)
    if not path.exists():
        os.rename(stage, path)
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.rename(path, old / "dir")
    os.rename(stage, path)
    for entry in (old / "dir").iterdir():  # a crash before this leaves them in the .old folder, never lost
        if entry.name not in owned and not (path / entry.name).exists():
            os.rename(entry, path / entry.name)
    shutil.rmtree(old, ignore_errors=True)
