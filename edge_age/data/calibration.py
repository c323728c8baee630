"""The int8 calibration set: which training images, and how they were chosen.

The manifest (``calibration_data/*.csv``) lists file names from the **training**
side of a split, never images. Rows are ordered so that every prefix is itself
stratified by age bin, gender and race: each image gets the key
``(rank within its stratum + u) / stratum size`` with ``u`` uniform in [0, 1), and
the rows are sorted by it. ``--calib N`` takes the first N rows.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_age.data.split import Row, Split, age_bin
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.csvio import read_table

_PACKAGE = Path(__file__).resolve().parents[1]
# Installed from a wheel: edge_age/calibration_data; in a source checkout: calibration_data/ beside the package.
MANIFEST_DIR = next((d for d in (_PACKAGE / "calibration_data", _PACKAGE.parent / "calibration_data") if d.is_dir()),
                    _PACKAGE / "calibration_data")
DEFAULT_MANIFEST = MANIFEST_DIR / "train_manifest.csv"
COLUMNS = ("file", "age", "gender", "race")


def stratum(row: Row) -> tuple[int, int, int]:
    return age_bin(row.age), row.gender, row.race


def stratified_order(rows: list[Row], seed: int = 0) -> list[Row]:
    """All ``rows`` ordered so that any prefix keeps the strata in proportion."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        groups[stratum(row)].append(row)
    keyed = []
    for key in sorted(groups):
        members = groups[key]
        for rank, i in enumerate(rng.permutation(len(members))):
            keyed.append(((rank + rng.random()) / len(members), members[i].file, members[i]))
    return [row for _, _, row in sorted(keyed, key=lambda k: (k[0], k[1]))]


def choose(split: Split, n: int, seed: int = 0, stratified: bool = True) -> list[Row]:
    """``n`` training images: the first ``n`` of the stratified order, or a plain random draw."""
    train = split.side("train")
    if not train:
        raise EdgeAgeError("the split has no training images to calibrate with")
    if stratified:
        return stratified_order(train, seed)[:n]
    rng = np.random.default_rng(seed)
    return [train[i] for i in sorted(rng.choice(len(train), size=min(n, len(train)), replace=False))]


def write_manifest(rows: list[Row], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((r.file, r.age, r.gender, r.race) for r in rows)
    return atomic.write_text(path, buf.getvalue())


def read_manifest(path: Path = DEFAULT_MANIFEST) -> list[Row]:
    reader = read_table(path, "calibration manifest", columns=COLUMNS, not_text="has a bad value")
    try:
        return [Row(r["file"], int(r["age"]), int(r["gender"]), int(r["race"])) for r in reader]
    except ValueError:
        raise EdgeAgeError(f"calibration manifest {path} has a bad value") from None
