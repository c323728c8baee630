"""Decoded, resized faces with their file-name labels, cached on disk.

The cache is keyed by the file list (names, sizes, modification times, or the
archive's), the image size and the cache format, so a second run decodes nothing.
It lives in ``$EDGE_AGE_CACHE`` (default ``~/.cache/edge-age``). Each entry's
``meta.json`` records the SHA-256 of its ``images.npy``: a damaged entry is decoded
again, and a cache that cannot be written is done without (both with a warning).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from edge_age.data.names import NameLabels, parse_name
from edge_age.data.sources import Source, open_dataset
from firmware_host.capture import images
from firmware_host.errors import EdgeAgeError, user_message
from firmware_host.files import atomic
from firmware_host.files.jsonio import to_json
from firmware_host.files.paths import DATA_ENV, cache_root, data_root, file_sha256
from firmware_host.progress import track

CACHE_FORMAT = 2  # 2: meta.json records the SHA-256 of images.npy
DEFAULT_SIZE = 64
_CHUNK = 512
_META_KEYS = {"names", "sha256", "phash", "unreadable", "ignored", "images_sha256"}
log = logging.getLogger(__name__)


def data_path(path: str | os.PathLike | None) -> Path:
    """The dataset location: ``path`` if given, else ``$EDGE_AGE_DATA``."""
    found = data_root(path)
    if found is None:
        raise EdgeAgeError(f"no dataset given: pass DATA or set {DATA_ENV}")
    return found


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


def decode_image(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """The image in ``data``, or None when it is empty, over the pixel limit or does not decode."""
    return images.decode(data, flags)[0]


def _decode(item: tuple[str, bytes], size: int):
    name, data = item
    digest = hashlib.sha256(data).hexdigest()
    bgr, reason = images.decode(data)
    if bgr is None:
        return name, None, digest, 0, reason
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    interp = cv2.INTER_AREA if min(bgr.shape[:2]) >= size else cv2.INTER_LINEAR
    rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=interp), cv2.COLOR_BGR2RGB)
    return name, rgb, digest, perceptual_hash(gray), None


def _chunks(iterable, n):
    it = iter(iterable)
    while chunk := list(islice(it, n)):
        yield chunk


def _decode_all(source: Source, size: int) -> tuple[dict, np.ndarray]:
    """Decode every image of ``source``: the metadata (names, hashes, unreadable and ignored files) and the images."""
    names, digests, hashes, rows = [], [], [], []
    unreadable: list[tuple[str, str]] = []
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
    unreadable = sorted(unreadable + source.unreadable)
    if not names and not unreadable:
        raise EdgeAgeError(f"no image files in {source.path}" + (f" ({len(source.ignored)} other "
                                                                 "file(s))" if source.ignored else ""))
    images = np.stack(rows) if rows else np.zeros((0, size, size, 3), np.uint8)
    return {"names": names, "sha256": digests, "phash": hashes, "unreadable": unreadable,
            "ignored": source.ignored}, images


def native_size(path: str | os.PathLike) -> int | None:
    """The side in pixels of the first readable image under ``path``: the chips' own resolution."""
    for _, data in open_dataset(path).iter_files():
        image = decode_image(data, cv2.IMREAD_GRAYSCALE)
        if image is not None:
            return int(max(image.shape))
    return None


def load_faces(path: str | os.PathLike | None, size: int = DEFAULT_SIZE, use_cache: bool = True) -> FaceSet:
    """Read, decode and resize every image under ``path`` (folder or archive), through the cache.

    A damaged cache entry is decoded again (with a warning); a cache that cannot be written is done without."""
    source = open_dataset(data_path(path))
    fingerprint = source.fingerprint()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{fingerprint}|{size}".encode()).hexdigest()[:24]
    entry = cache_root() / "faces" / key
    found = _read_entry(entry) if use_cache and entry.is_dir() else None
    if found:
        meta, images = found
    else:
        meta, images = _decode_all(source, size)
        if use_cache:
            _store(entry, meta, images)
    return FaceSet(root=source.path, fingerprint=fingerprint, names=meta["names"], images=images,
                   sha256=meta["sha256"], phash=np.array([int(h, 16) for h in meta["phash"]], dtype=np.uint64),
                   unreadable=[tuple(u) for u in meta["unreadable"]], ignored=meta["ignored"],
                   from_cache=found is not None)


def _read_entry(entry: Path) -> tuple[dict, np.ndarray] | None:
    """A cache entry's metadata and its images (memory-mapped), or None, with a warning, when the entry
    is damaged: ``meta.json`` unreadable, or ``images.npy`` not matching the checksum and size it records."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not _META_KEYS <= set(meta):
            raise ValueError("meta.json is not the metadata of a cache entry")
        if file_sha256(entry / "images.npy") != meta["images_sha256"]:
            raise ValueError("images.npy does not match its checksum")
        images = np.load(entry / "images.npy", mmap_mode="r")
        if images.ndim != 4 or not len(images) == len(meta["names"]) == len(meta["sha256"]) == len(meta["phash"]):
            raise ValueError("images.npy does not match meta.json")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("image cache entry %s is damaged (%s): decoding the images again", entry, user_message(exc))
        return None
    return meta, images


def _store(entry: Path, meta: dict, images: np.ndarray) -> None:
    """Write a cache entry: built in a staging folder beside it and moved into place in one step, replacing
    a damaged one. When the cache cannot be written (a full disk, a read-only folder) a warning says so and
    the command carries on without it."""
    try:
        work = atomic.staging_dir(entry.parent)
    except EdgeAgeError as exc:
        log.warning("%s: carrying on without the image cache", exc)
        return
    try:
        np.save(work / "images.npy", images)
        (work / "meta.json").write_text(to_json({**meta, "images_sha256": file_sha256(work / "images.npy")},
                                                indent=None))
        shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(work, entry)
        except OSError:
            if not (entry / "meta.json").is_file():  # else another process filled the same entry first
                raise
    except OSError as exc:
        log.warning("cannot write the image cache in %s (%s): carrying on without it", entry.parent, user_message(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)
