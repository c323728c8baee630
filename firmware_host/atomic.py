"""Atomic file output: a half-written file never replaces a good one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

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
