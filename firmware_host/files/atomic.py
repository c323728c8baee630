"""Atomic file output: a half-written file never replaces a good one, and a report's files are
replaced together or not at all.

Partial files and staging folders are hidden and carry their process id (``.NAME.pid123.x.part.ext``,
``.staging.pid123.x``); the first write into a folder removes those of processes that no longer run
(a hard kill, the OOM killer). Any ``OSError`` on output (a full disk, a read-only folder) becomes a
one-line :class:`EdgeAgeError`, and what was being written is removed.

Two processes writing into one folder take turns: :func:`locked` holds ``.edge-age.lock`` there with
``flock``, which the kernel releases when its holder dies (even by ``kill -9``), so no lock is ever stale.
A command that writes a folder for a long time (bench, convert) holds it throughout and a second one stops
with a one-line error; :func:`file_set` holds it while it replaces a set, so a set is never a mix of two.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from firmware_host.errors import EdgeAgeError, literal
from firmware_host.logs import STATUS

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)
_LEFTOVER = re.compile(r"^\..*\.pid(\d+)\.[^.]*(\.part|$)")
_swept: set[Path] = set()
LOCK = ".edge-age.lock"
_held: dict[Path, int] = {}  # folders this process holds: how many times (a lock is re-entrant)


def _tag() -> str:
    return f".pid{os.getpid()}."


def output_error(path: str | os.PathLike, exc: OSError) -> EdgeAgeError:
    """The one-line error for a failed write of ``path``."""
    return EdgeAgeError(f"cannot write {path}: {exc.strerror or exc}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(folder: Path) -> list[Path]:
    """Remove the partial files and staging folders that dead processes left in ``folder``; return them."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _LEFTOVER.match(entry.name)
            if not match or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed, check that files can be written in it and, the first time, sweep it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise EdgeAgeError(f"cannot write to folder {path}: {exc.strerror or exc}") from None
    key = path.resolve()
    if key not in _swept:
        _swept.add(key)
        sweep(path)
    return path


def begin(path: str | os.PathLike) -> Path:
    """A new hidden temporary file beside ``path`` (same last suffix), for :func:`commit` or :func:`discard`."""
    path = Path(path)
    writable_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{_tag()}", suffix=".part" + path.suffix)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, path: str | os.PathLike) -> None:
    """Move a finished temporary file into place in one step."""
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        discard(tmp)
        raise output_error(path, exc) from None


def discard(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same last suffix); move it into place only on success.
    An ``OSError`` while writing it becomes a one-line error; the temporary file is removed."""
    tmp = begin(path)
    try:
        yield tmp
    except OSError as exc:
        discard(tmp)
        raise output_error(path, exc) from None
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, path)


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


def staging_dir(parent: str | os.PathLike) -> Path:
    """A new hidden staging folder in ``parent``, named after this process (swept when it is dead)."""
    parent = writable_dir(parent)
    try:
        return Path(tempfile.mkdtemp(dir=parent, prefix=f".staging{_tag()}"))
    except OSError as exc:
        raise output_error(parent, exc) from None


@contextlib.contextmanager
def file_set(folder: str | os.PathLike, name: str) -> Iterator[Path]:
    """Yield a staging folder inside ``folder`` for the files of one report: when the block succeeds they
    replace the previous set of that ``name`` in ``folder`` together (renames only, JSON files last, so a
    reader who finds a new JSON finds the pages that go with it; files of the previous set that the new one
    lacks, such as a plot, are removed after); when it fails (a full disk) none does, and the staging
    folder is removed. The names of each set are kept in the hidden ``.<name>.files`` beside them."""
    folder = Path(folder)
    staging = staging_dir(folder)
    listing = folder / f".{name}.files"
    try:
        try:
            yield staging
        except EdgeAgeError as exc:  # a write inside the staging folder: name the folder the user gave
            raise EdgeAgeError(str(exc).replace(str(staging), str(folder))) from None
        files = sorted(staging.iterdir(), key=lambda p: (p.suffix == ".json", p.name))
        with locked(folder, wait=True):
            before = _listed(listing)
            for path in files:
                commit(path, folder / path.name)
            now = {p.name for p in files}
            write_text(listing, "".join(f"{n}\n" for n in sorted(now)))
            for stale in before - now:
                discard(folder / stale)
    except OSError as exc:
        raise output_error(folder, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _listed(listing: Path) -> set[str]:
    """The file names a set's listing holds (plain names only: nothing outside the folder is ever removed)."""
    try:
        names = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    return {n for n in names if n and n == Path(n).name and not n.startswith(".")}


@contextlib.contextmanager
def locked(folder: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) against other processes writing into it; yield it.

    When another process holds it: wait for it with ``wait``, else raise a one-line error that names it.
    Re-entrant within a process. The lock file is removed on release; a process killed while holding it
    leaves the file, but the kernel has released its lock, so the next writer takes it at once.
    """
    folder = writable_dir(folder)
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    fd = _acquire(folder / LOCK, wait=wait)
    _held[key] = 1
    try:
        yield folder
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK)  # before the release: a waiter on this file sees it gone and retries
        os.close(fd)


def _acquire(path: Path, *, wait: bool) -> int:
    """An open descriptor of ``path`` holding its exclusive ``flock`` (the file still in place, not one that
    its previous holder removed while this process waited)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_UMASK)
        except OSError as exc:
            raise output_error(path, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise EdgeAgeError(f"{literal(path.parent)} is being written by another edge-age process "
                                       f"({holder}): wait for it to finish, or give another {{}}",
                                       option="--out", parameter="folder") from None
                log.info("waiting for another edge-age process (%s) to finish writing %s", holder, path.parent,
                         extra=STATUS)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                with contextlib.suppress(OSError):  # who holds it, for the message of the next one (a full disk
                    os.ftruncate(fd, 0)              # may refuse this: the lock holds all the same)
                    os.write(fd, str(os.getpid()).encode())
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed it while this process waited: lock the new one


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(os.pread(fd, 20, 0))}"
    return "pid unknown"
