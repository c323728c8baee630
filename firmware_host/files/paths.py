"""Paths and environment every layer shares: the cache root, the default dataset, a file's SHA-256."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "EDGE_AGE_CACHE"
DATA_ENV = "EDGE_AGE_DATA"


def cache_root() -> Path:
    """``$EDGE_AGE_CACHE``, default ``~/.cache/edge-age``: decoded images, detector models."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "edge-age"))


def data_root(given: str | os.PathLike | None = None) -> Path | None:
    """``given``, else ``$EDGE_AGE_DATA``, else None."""
    if given:
        return Path(given)
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
