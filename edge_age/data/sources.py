"""Image files from a folder (recursively) or a .tar/.tar.gz/.zip archive, streamed."""
from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from firmware_host.capture.images import IMAGE_SUFFIXES
from firmware_host.errors import EdgeAgeError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


@dataclass
class Source:
    """A dataset location: ``kind`` is ``folder``, ``tar`` or ``zip``."""

    path: Path
    kind: str
    ignored: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, reason): files that cannot be read

    def image_count(self) -> int | None:
        """How many image files there are, when known without reading the data."""
        if self.kind == "folder":
            return len(self._folder_files())
        if self.kind == "zip":
            with _open_zip(self.path) as zf:
                return sum(1 for i in zf.infolist() if not i.is_dir() and is_image_name(i.filename))
        return None

    def fingerprint(self) -> str:
        """A hash of the content: each image file's name and bytes (or the archive's bytes). Copies of the same
        data agree whatever their paths and times, so soft targets and caches made on one copy serve another."""
        h = hashlib.sha256()
        if self.kind == "folder":
            for rel in self._folder_files():
                try:
                    data = (self.path / rel).read_bytes()
                except OSError:  # a dangling link: counted as unreadable when the files are read
                    h.update(f"{rel}\tunreadable\n".encode())
                    continue
                h.update(f"{rel}\t{len(data)}\t".encode())
                h.update(hashlib.sha256(data).digest())
        else:
            with open(self.path, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
        return h.hexdigest()

    def iter_files(self) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, bytes)`` for every image file; other files go to ``ignored``, files that cannot
        be read (a dangling link, no permission) to ``unreadable``."""
        self.ignored, self.unreadable = [], []
        if self.kind == "folder":
            yield from self._iter_folder()
        elif self.kind == "zip":
            yield from self._iter_zip()
        else:
            yield from self._iter_tar()

    def _folder_files(self) -> list[str]:
        if not hasattr(self, "_files"):
            files, ignored = [], []
            for dirpath, dirnames, filenames in os.walk(self.path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in filenames:
                    if name.startswith("."):
                        continue
                    rel = os.path.relpath(os.path.join(dirpath, name), self.path)
                    (files if is_image_name(name) else ignored).append(rel)
            self._files, self._ignored_files = sorted(files), sorted(ignored)
        return self._files

    def _iter_folder(self) -> Iterator[tuple[str, bytes]]:
        files = self._folder_files()
        self.ignored = list(self._ignored_files)
        for rel in files:
            path = self.path / rel
            try:
                data = path.read_bytes()
            except OSError as exc:
                reason = "dangling symbolic link" if path.is_symlink() and not path.exists() else exc.strerror
                self.unreadable.append((rel, f"cannot be read: {reason or exc}"))
                continue
            yield rel, data

    def _iter_zip(self) -> Iterator[tuple[str, bytes]]:
        with _open_zip(self.path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if not is_image_name(info.filename):
                    self.ignored.append(info.filename)
                    continue
                try:
                    data = zf.read(info)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise EdgeAgeError(f"archive {self.path} is corrupt at {info.filename}: {exc}") from None
                yield info.filename, data

    def _iter_tar(self) -> Iterator[tuple[str, bytes]]:
        try:
            with tarfile.open(self.path, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    if not is_image_name(member.name):
                        self.ignored.append(member.name)
                        continue
                    yield member.name, tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise EdgeAgeError(f"archive {self.path} is truncated or corrupt: {exc}") from None


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EdgeAgeError(f"archive {path} is truncated or corrupt: {exc}") from None


def open_dataset(path: str | os.PathLike) -> Source:
    """Check that ``path`` is a folder or a supported archive and return its ``Source``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise EdgeAgeError(f"data path {path} does not exist")
    if path.is_dir():
        return Source(path, "folder")
    name = path.name.lower()
    if name.endswith(".zip"):
        return Source(path, "zip")
    if name.endswith(TAR_SUFFIXES):
        return Source(path, "tar")
    raise EdgeAgeError(f"data path {path} is neither a folder nor a .tar, .tar.gz or .zip archive")
