"""Reproducible, group-aware, stratified train/val/test split written to one CSV.

Groups that must stay on one side: duplicate clusters (byte-identical or
near-duplicate images) and images whose time stamps fall in the same minute
(often the same person). Groups are assigned greedily, largest first, to the side
furthest below its target share of the group's (age bin, gender) strata.

Duplicate policy (one image per cluster survives):
- labels agree: keep the first image by name, drop the copies;
- genders disagree, or ages span more than ``age_tolerance`` years: drop the cluster;
- otherwise: keep the first image with the median age and the most common race.
"""
from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_age.data.audit import Audit, components
from edge_age.data.names import MAX_AGE
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.csvio import read_table

SIDES = ("train", "val", "test")
AGE_BINS = (0, 3, 10, 20, 30, 40, 50, 60, 70, 80)
COLUMNS = ("file", "age", "gender", "race", "group", "split")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_AGE_TOLERANCE = 4


def age_bin(age: int) -> int:
    """Index of ``age`` in ``AGE_BINS``."""
    return int(np.searchsorted(AGE_BINS, age, side="right") - 1)


def age_bin_label(index: int) -> str:
    lo = AGE_BINS[index]
    return f"{lo}+" if index == len(AGE_BINS) - 1 else f"{lo}-{AGE_BINS[index + 1] - 1}"


@dataclass
class Row:
    """One line of the split file."""

    file: str
    age: int
    gender: int
    race: int
    group: int = -1
    split: str = ""


@dataclass
class Split:
    rows: list[Row]
    policy: Counter = field(default_factory=Counter)

    def side(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.split == name]


def resolve_duplicates(audit: Audit, age_tolerance: int = DEFAULT_AGE_TOLERANCE) -> tuple[list[Row], Counter]:
    """Apply the duplicate policy; return one row per kept image and the counts."""
    faces = audit.faces
    usable = {int(i) for i in faces.usable()}
    policy: Counter = Counter()
    rows: dict[int, Row] = {}
    in_cluster = set()
    for cluster in audit.clusters:
        in_cluster.update(cluster)
        members = [i for i in cluster if i in usable]
        if not members:
            continue
        labels = [faces.labels[i] for i in members]
        ages = sorted(lab.age for lab in labels)
        keep = members[0]
        if len({(lab.age, lab.gender, lab.race) for lab in labels}) == 1:
            policy["duplicates_dropped"] += len(members) - 1
            rows[keep] = _row(faces, keep)
        elif len({lab.gender for lab in labels}) > 1 or ages[-1] - ages[0] > age_tolerance:
            policy["conflicting_clusters_dropped"] += 1
            policy["conflicting_images_dropped"] += len(members)
        else:
            race = Counter(lab.race for lab in labels).most_common(1)[0][0]
            rows[keep] = Row(faces.names[keep], ages[(len(ages) - 1) // 2], labels[0].gender, race)
            policy["conflicting_clusters_merged"] += 1
            policy["duplicates_dropped"] += len(members) - 1
    for i in sorted(usable - in_cluster):
        rows[i] = _row(faces, i)
    policy["set_aside_names"] = len(faces.names) - len(usable)
    policy["unreadable"] = len(faces.unreadable)
    return [rows[i] for i in sorted(rows)], policy


def _row(faces, i: int) -> Row:
    lab = faces.labels[i]
    return Row(faces.names[i], lab.age, lab.gender, lab.race)


def assign_groups(rows: list[Row], audit: Audit) -> None:
    """Set ``row.group``: rows of one duplicate cluster or one minute share a group id."""
    faces = audit.faces
    index = faces.index()
    idx = [index[r.file] for r in rows]
    pairs: list[tuple[int, int]] = []
    by_minute: dict[str, int] = {}
    cluster_of = {i: c for c, cluster in enumerate(audit.clusters) for i in cluster}
    by_cluster: dict[int, int] = {}
    for k, i in enumerate(idx):
        minute = faces.labels[i].minute
        if minute:
            pairs.append((by_minute.setdefault(minute, k), k))
        if i in cluster_of:
            pairs.append((by_cluster.setdefault(cluster_of[i], k), k))
    group = np.arange(len(rows))
    for g, members in enumerate(components(len(rows), pairs)):
        group[members] = len(rows) + g
    _, dense = np.unique(group, return_inverse=True)
    for row, g in zip(rows, dense.tolist()):
        row.group = g


def assign_sides(rows: list[Row], fractions=DEFAULT_FRACTIONS, seed: int = 0) -> None:
    """Set ``row.split`` group by group, keeping every stratum's shares near ``fractions``."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if len(fractions) != 3 or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise EdgeAgeError(f"split fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    groups: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.group].append(row)
    strata = {row.file: (age_bin(row.age), row.gender) for row in rows}
    totals = Counter(strata.values())
    assigned = np.zeros(3)
    per_side: list[Counter] = [Counter(), Counter(), Counter()]
    order = np.random.default_rng(seed).permutation(sorted(groups))
    order = sorted(order.tolist(), key=lambda g: -len(groups[g]))  # stable: ties keep the seeded order
    for g in order:
        members = Counter(strata[r.file] for r in groups[g])
        need = [sum(c * (fractions[s] * totals[k] - per_side[s][k]) / totals[k] for k, c in members.items())
                + (fractions[s] * len(rows) - assigned[s]) / len(rows) for s in range(3)]
        need = [n if fractions[s] > 0 else -np.inf for s, n in enumerate(need)]
        side = int(np.argmax(need))
        per_side[side].update(members)
        assigned[side] += len(groups[g])
        for row in groups[g]:
            row.split = SIDES[side]


def make_split(audit: Audit, fractions=DEFAULT_FRACTIONS, seed: int = 0,
               age_tolerance: int = DEFAULT_AGE_TOLERANCE) -> Split:
    """Deduplicate, group and split the faces of ``audit``."""
    rows, policy = resolve_duplicates(audit, age_tolerance)
    if not rows:
        raise EdgeAgeError("no image with readable labels to split")
    assign_groups(rows, audit)
    assign_sides(rows, fractions, seed)
    return Split(rows, policy)


def write_split(split: Split, path: str | Path) -> Path:
    """Write the split CSV atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in split.rows:
        writer.writerow((r.file, r.age, r.gender, r.race, r.group, r.split))
    return atomic.write_text(path, buf.getvalue())


def read_split(path: str | Path) -> Split:
    """Read a split CSV, checking its columns and values."""
    path = Path(path)
    reader = read_table(path, "split file", columns=COLUMNS, not_text="is not a text CSV")
    rows, seen = [], {}
    for line, rec in enumerate(reader, start=2):
        try:
            row = Row(rec["file"], int(rec["age"]), int(rec["gender"]), int(rec["race"]), int(rec["group"]),
                      rec["split"])
        except (TypeError, ValueError):
            raise EdgeAgeError(f"split file {path}, line {line}: bad value in {dict(rec)}") from None
        if row.split not in SIDES:
            raise EdgeAgeError(f"split file {path}, line {line}: side {row.split!r} is not one of {', '.join(SIDES)}")
        if not 0 <= row.age <= MAX_AGE:
            raise EdgeAgeError(f"split file {path}, line {line}: age {row.age} is outside 0..{MAX_AGE}")
        if row.file in seen:  # a face counted twice would silently weigh twice in every score
            raise EdgeAgeError(f"split file {path}, line {line}: {row.file} is listed again (first on line "
                               f"{seen[row.file]})")
        seen[row.file] = line
        rows.append(row)
    if not rows:
        raise EdgeAgeError(f"split file {path} has no rows")
    return Split(rows)


def check_split(split: Split) -> dict:
    """Each side's size and age-bin / gender shares, and the largest difference in share between sides."""
    sides = {}
    for name in SIDES:
        rows = split.side(name)
        n = max(len(rows), 1)
        bins = Counter(age_bin(r.age) for r in rows)
        genders = Counter(r.gender for r in rows)
        sides[name] = {
            "images": len(rows),
            "groups": len({r.group for r in rows}),
            "mean_age": float(np.mean([r.age for r in rows])) if rows else 0.0,
            "age_bins": {age_bin_label(b): bins[b] / n for b in range(len(AGE_BINS))},
            "female": genders[1] / n,
        }
    keys = [("age_bins", k) for k in sides["train"]["age_bins"]] + [("female", None)]
    worst, where = 0.0, ""
    for part, key in keys:
        values = [sides[s][part][key] if key else sides[s][part] for s in SIDES if sides[s]["images"]]
        if values and max(values) - min(values) > worst:
            worst, where = max(values) - min(values), key or part
    leaks = [g for g, members in _groups_by_side(split).items() if len(members) > 1]
    return {"sides": sides, "largest_share_difference": worst, "largest_difference_in": where,
            "groups_on_several_sides": len(leaks)}


def _groups_by_side(split: Split) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for r in split.rows:
        out[r.group].add(r.split)
    return out
