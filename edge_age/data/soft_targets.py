"""Soft targets: a teacher's age distributions and P(female) per training file, for distillation.

Stored once in an ``.npz`` (plain and mirrored faces) with a JSON header that
carries the data fingerprint and the split's hash, so that a student never
trains against targets made for other data.
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
    """Save as ``.npz`` (arrays plus a JSON header), atomically."""
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, files=np.array(targets.files), age=targets.age, age_mirror=targets.age_mirror,
                                female=targets.female, female_mirror=targets.female_mirror,
                                meta=np.array(json.dumps(targets.meta)))
    return path


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
    shapes_ok = (st.age.ndim == 2 and st.age.shape == st.age_mirror.shape and st.age.shape[0] == n
                 and st.female.shape == st.female_mirror.shape == (n,))
    if not shapes_ok or not all(np.isfinite(a).all() for a in (st.age, st.age_mirror, st.female, st.female_mirror)):
        raise EdgeAgeError(f"{path}: damaged soft targets (shapes or non-finite values)")
    return st


