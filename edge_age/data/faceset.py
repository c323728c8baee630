"""Decoded, resized faces with their file-name labels, cached on disk.

The cache is keyed by the file list (names, sizes, modification times, or the
archive's), the image size and the cache format, so a second run decodes nothing.
It lives in ``$EDGE_AGE_CACHE`` (default ``~/.cache/edge-age``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from edge_age.data.names import NameLabels, parse_name
from edge_age.data.sources import Source, open_source
from edge_age.progress import track
from firmware_host.errors import EdgeAgeError

CACHE_FORMAT = 1
DEFAULT_SIZE = 64
DATA_ENV = "EDGE_AGE_DATA"
_CHUNK = 512


def cache_root() -> Path:
    return Path(os.environ.get("EDGE_AGE_CACHE", Path.home() / ".cache" / "edge-age"))


def data_path(path: str | os.PathLike | None) -> Path:
    """The dataset location: ``path`` if given, else ``$EDGE_AGE_DATA``."""
    if path:
        return Path(path)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    raise EdgeAgeError(f"no dataset given: pass DATA or set {DATA_ENV}")


@dataclass
class FaceSet:
    """Every decodable image of a dataset (RGB, ``size`` x ``size``) with its labels.

    ``names`` index ``images``, ``sha256`` and ``phash``; ``unreadable`` holds
    ``(name, reason)`` for files that did not decode, ``ignored`` non-image files.
    """

    root: Path
    fingerprint: str
    names: list[str]
    images: np.ndarray
    sha256: list[str]
    phash: np.ndarray
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __post_init__(self) -> None:
        self.labels: list[NameLabels] = [parse_name(n) for n in self.names]

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def usable(self) -> np.ndarray:
        """Indices of images whose labels could be read."""
        return np.array([i for i, lab in enumerate(self.labels) if lab.usable], dtype=np.int64)

    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}


def perceptual_hash(gray: np.ndarray) -> int:
    """64-bit pHash: sign of the 8x8 lowest DCT frequencies of a 32x32 thumbnail against their median."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = np.packbits(low > np.median(low))
    return int.from_bytes(bits.tobytes(), "big")


def _decode(item: tuple[str, bytes], size: int):
    name, data = item
    digest = hashlib.sha256(data).hexdigest()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        return name, None, digest, 0, "not a decodable image"
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    interp = cv2.INTER_AREA if min(bgr.shape[:2]) >= size else cv2.INTER_LINEAR
    rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=interp), cv2.COLOR_BGR2RGB)
    return name, rgb, digest, perceptual_hash(gray), None


def _chunks(iterable, n):
    it = iter(iterable)
    while chunk := list(islice(it, n)):
        yield chunk


def _decode_all(source: Source, size: int, workdir: Path) -> dict:
    """Decode every image of ``source`` into ``workdir/images.npy``; return the metadata."""
    names, digests, hashes, unreadable, rows = [], [], [], [], []
    total = source.image_count()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        items = track(source.iter_files(), f"decoding {source.path.name}", total)
        for chunk in _chunks(items, _CHUNK):
            for name, rgb, digest, phash, error in pool.map(lambda it: _decode(it, size), chunk):
                if error:
                    unreadable.append((name, error))
                    continue
                names.append(name)
                digests.append(digest)
                hashes.append(f"{phash:016x}")
                rows.append(rgb)
    if not names and not unreadable:
        raise EdgeAgeError(f"no image files in {source.path}" + (f" ({len(source.ignored)} other file(s))" if source.ignored else ""))
    images = np.stack(rows) if rows else np.zeros((0, size, size, 3), np.uint8)
    np.save(workdir / "images.npy", images)
    return {"names": names, "sha256": digests, "phash": hashes, "unreadable": unreadable, "ignored": source.ignored}


def native_size(path: str | os.PathLike) -> int | None:
    """The side in pixels of the first readable image under ``path``: the chips' own resolution."""
    for _, data in open_source(path).iter_files():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is not None:
            return int(max(image.shape))
    return None


def load_faces(path: str | os.PathLike | None, size: int = DEFAULT_SIZE, use_cache: bool = True) -> FaceSet:
    """Read, decode and resize every image under ``path`` (folder or archive), through the cache."""
    source = open_source(data_path(path))
    fingerprint = source.fingerprint()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{fingerprint}|{size}".encode()).hexdigest()[:24]
    entry = cache_root() / "faces" / key
    from_cache = use_cache and (entry / "meta.json").is_file()
    if not from_cache:
        entry = _build_entry(source, size, entry if use_cache else None)
    meta = json.loads((entry / "meta.json").read_text())
    images = np.load(entry / "images.npy", mmap_mode="r" if use_cache else None)
    if not use_cache:
        shutil.rmtree(entry, ignore_errors=True)
    return FaceSet(root=source.path, fingerprint=fingerprint, names=meta["names"], images=images,
                   sha256=meta["sha256"], phash=np.array([int(h, 16) for h in meta["phash"]], dtype=np.uint64),
                   unreadable=[tuple(u) for u in meta["unreadable"]], ignored=meta["ignored"], from_cache=from_cache)


def _build_entry(source: Source, size: int, entry: Path | None) -> Path:
    """Decode into a temporary folder and move it to ``entry`` (when caching) in one step."""
    parent = entry.parent if entry else Path(tempfile.gettempdir())
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=parent, prefix=".build-"))
    except OSError as exc:
        raise EdgeAgeError(f"cannot write the image cache in {parent}: {exc.strerror or exc}") from None
    try:
        meta = _decode_all(source, size, work)
        (work / "meta.json").write_text(json.dumps(meta))
        if entry is None:
            return work
        try:
            os.replace(work, entry)
        except OSError:  # another process filled the same entry first
            shutil.rmtree(work, ignore_errors=True)
        return entry
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
