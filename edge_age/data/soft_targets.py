"""Soft targets: a teacher's age distributions and P(female) per training file, for distillation.

Stored once in an ``.npz`` (plain and mirrored faces) with a JSON header that
carries the data fingerprint and the split's hash, so that a student never
trains against targets made for other data. The arrays are kept in float16 (half
the size; a probability loses at most 0.05% of itself) and read back as float32,
each age distribution scaled to sum to 1 again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic

FORMAT = 1
SIDES = ("train", "val")  # the split sides a teacher labels


@dataclass
class SoftTargets:
    """The teacher's age distributions and P(female) per file, plain and mirrored."""

    files: list[str]
    age: np.ndarray          # (N, ages) float32, rows sum to 1
    age_mirror: np.ndarray
    female: np.ndarray       # (N,) float32
    female_mirror: np.ndarray
    meta: dict

    def rows(self, files: list[str]) -> SoftTargets:
        """The targets of ``files``, in that order; an error naming the first file without one."""
        index = {f: i for i, f in enumerate(self.files)}
        missing = [f for f in files if f not in index]
        if missing:
            raise EdgeAgeError(f"the soft targets have no entry for {len(missing)} training files "
                               f"(first: {missing[0]}): make them again for this split")
        idx = np.array([index[f] for f in files], dtype=np.int64)
        return SoftTargets(list(files), self.age[idx], self.age_mirror[idx], self.female[idx],
                           self.female_mirror[idx], self.meta)


def write_soft_targets(path: Path, targets: SoftTargets) -> Path:
    """Save as ``.npz`` (float16 arrays plus a JSON header), atomically."""
    path = Path(path)
    half = {k: np.asarray(getattr(targets, k), np.float16) for k in ("age", "age_mirror", "female", "female_mirror")}
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, files=np.array(targets.files), **half, meta=np.array(json.dumps(targets.meta)))
    return path


def _distributions(rows: np.ndarray) -> np.ndarray | None:
    """Stored age distributions as float32 rows summing to 1; None if any row is not a distribution (negative,
    non-finite, or summing far from 1)."""
    rows = np.asarray(rows, np.float32)
    sums = rows.sum(axis=1, keepdims=True) if rows.ndim == 2 else None
    if sums is None or not np.isfinite(rows).all() or (rows < 0).any() or (np.abs(sums - 1) > 0.01).any():
        return None
    return rows / sums


def read_soft_targets(path: Path, *, data_fingerprint: str, split_sha256: str) -> SoftTargets:
    """Soft targets made for exactly this data set and split, validated."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            st = SoftTargets([str(f) for f in z["files"]], z["age"], z["age_mirror"], z["female"],
                             z["female_mirror"], meta)
    except FileNotFoundError:
        raise EdgeAgeError(f"soft targets {path} do not exist: make them with 'edge-age teacher'") from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise EdgeAgeError(f"{path} is not an edge-age soft-target file: {str(exc)[:160]}") from None
    if meta.get("format") != FORMAT:
        raise EdgeAgeError(f"{path}: soft-target format {meta.get('format')!r}, expected {FORMAT}")
    if meta.get("data_fingerprint") != data_fingerprint:
        raise EdgeAgeError(f"{path} was made from other data (fingerprint {meta.get('data_fingerprint')}, "
                           f"this data set is {data_fingerprint})")
    if meta.get("split_sha256") != split_sha256:
        raise EdgeAgeError(f"{path} was made for another split (sha256 {str(meta.get('split_sha256'))[:16]}, "
                           f"this split is {split_sha256[:16]})")
    n = len(st.files)
    age, age_mirror = _distributions(st.age), _distributions(st.age_mirror)
    female, female_mirror = (np.asarray(f, np.float32) for f in (st.female, st.female_mirror))
    shapes_ok = (age is not None and age_mirror is not None and age.shape == age_mirror.shape and age.shape[0] == n
                 and female.shape == female_mirror.shape == (n,))
    if not shapes_ok or not all(((f >= 0) & (f <= 1)).all() for f in (female, female_mirror)):
        raise EdgeAgeError(f"{path}: damaged soft targets (shapes, or ages that are not distributions, or P(female) "
                           "outside 0..1)")
    return SoftTargets(st.files, age, age_mirror, female, female_mirror, meta)


