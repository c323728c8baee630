"""TFLite conversion targets: one table, one small function per target."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from edge_age.tf_setup import tensorflow
from firmware_host import atomic
from firmware_host.errors import EdgeAgeError


def _converter(model):
    return tensorflow().lite.TFLiteConverter.from_keras_model(model)


def float32(model, **_) -> bytes:
    """Plain float32: the reference every other target is compared with."""
    return _converter(model).convert()


TARGETS: dict[str, Callable[..., bytes]] = {
    "float32": float32,
}


def convert(model, target: str, path: Path, **options) -> Path:
    """Convert ``model`` to ``target`` and write it atomically to ``path``."""
    if target not in TARGETS:
        raise EdgeAgeError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return atomic.write_bytes(path, TARGETS[target](model, **options))
