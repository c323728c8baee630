"""Audit and split on the full utkface64 folder, checked against independent references."""
from collections import defaultdict

import numpy as np
import pytest

from edge_age.data.audit import audit_faces, label_tuples
from edge_age.data.faceset import load_faces
from edge_age.data.names import parse_name
from edge_age.data.split import SIDES, check_split, make_split, read_split, resolve_duplicates, write_split
from firmware_host.errors import EdgeAgeError
from tests.conftest import UTK64
from tests.dupes import duplicate_groups


@pytest.fixture(scope="module")
def audit64():
    return audit_faces(load_faces(UTK64))


@pytest.fixture(scope="module")
def split64(audit64):
    return make_split(audit64, seed=0)


def test_every_byte_identical_group_is_found(audit64):
    reference = duplicate_groups(UTK64)
    assert len(reference) >= 300  # "several hundred"
    found = sorted(sorted(audit64.faces.names[i] for i in g) for g in audit64.exact_groups)
    assert found == reference
    assert audit64.summary()["duplicate_groups"] == len(reference)


def test_conflicting_groups_are_named(audit64):
    summary = audit64.summary()
    by_name = {n: i for i, n in enumerate(audit64.faces.names)}
    conflicting_exact = [g for g in duplicate_groups(UTK64)
                         if len({(parse_name(n).age, parse_name(n).gender, parse_name(n).race) for n in g}) > 1]
    assert conflicting_exact
    named = {audit64.faces.names[i] for g in audit64.conflicting for i in g}
    for group in conflicting_exact:
        assert set(group) <= named
    assert summary["conflicting_groups"] >= len(conflicting_exact)
    for g in audit64.conflicting:
        assert len(label_tuples(audit64.faces, g)) > 1
    assert summary["malformed"] == 8 and summary["parsed"] == summary["images"] == len(by_name)


def test_near_duplicates_are_the_same_photo(audit64):
    """Every near-duplicate pair is highly correlated; a sample of random pairs is not."""
    faces = audit64.faces
    assert audit64.near_groups
    grey = np.asarray(faces.images, dtype=np.float32).mean(axis=3).reshape(len(faces.names), -1)
    grey -= grey.mean(axis=1, keepdims=True)
    grey /= np.linalg.norm(grey, axis=1, keepdims=True)
    corr = [float(grey[g[0]] @ grey[j]) for g in audit64.near_groups for j in g[1:]]
    assert np.median(corr) > 0.97
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(grey), 500), rng.integers(0, len(grey), 500)
    assert np.median(np.sum(grey[a] * grey[b], axis=1)) < 0.8


def test_split_keeps_every_group_on_one_side(split64, audit64):
    side = {r.file: r.split for r in split64.rows}
    for cluster in audit64.exact_groups + audit64.near_groups + audit64.clusters:
        sides = {side[audit64.faces.names[i]] for i in cluster if audit64.faces.names[i] in side}
        assert len(sides) <= 1
    by_minute = defaultdict(set)
    for r in split64.rows:
        by_minute[parse_name(r.file).minute].add(r.split)
    assert all(len(s) == 1 for s in by_minute.values())
    assert check_split(split64)["groups_on_several_sides"] == 0


def test_split_sizes_and_strata(split64):
    report = check_split(split64)
    n = len(split64.rows)
    for name, share in zip(SIDES, (0.8, 0.1, 0.1)):
        assert abs(report["sides"][name]["images"] / n - share) < 0.01
    assert report["largest_share_difference"] < 0.01


def test_duplicate_policy(split64, audit64):
    kept = {r.file: r for r in split64.rows}
    names = audit64.faces.names
    for cluster in audit64.clusters:
        survivors = [names[i] for i in cluster if names[i] in kept]
        assert len(survivors) <= 1
        labels = [audit64.faces.labels[i] for i in cluster]
        ages = [lab.age for lab in labels]
        dropped = len({lab.gender for lab in labels}) > 1 or max(ages) - min(ages) > 4
        assert (not survivors) == dropped
        if survivors:
            assert min(ages) <= kept[survivors[0]].age <= max(ages)
    p = split64.policy
    assert p["conflicting_clusters_dropped"] + p["conflicting_clusters_merged"] == len(audit64.conflicting)
    assert len(split64.rows) == len(names) - p["duplicates_dropped"] - p["conflicting_images_dropped"]


def test_split_is_reproducible(audit64, tmp_path):
    a = write_split(make_split(audit64, seed=3), tmp_path / "a.csv").read_text()
    b = write_split(make_split(audit64, seed=3), tmp_path / "b.csv").read_text()
    c = write_split(make_split(audit64, seed=4), tmp_path / "c.csv").read_text()
    assert a == b and a != c
    back = read_split(tmp_path / "a.csv")
    assert [(r.file, r.age, r.split) for r in back.rows] == [(r.file, r.age, r.split) for r in make_split(audit64,
                                                                                                          seed=3).rows]


def test_custom_fractions(audit64):
    result = make_split(audit64, fractions=(0.7, 0.0, 0.3), seed=1)
    sizes = check_split(result)["sides"]
    assert sizes["val"]["images"] == 0
    assert abs(sizes["test"]["images"] / len(result.rows) - 0.3) < 0.01
    with pytest.raises(EdgeAgeError, match="fractions"):
        make_split(audit64, fractions=(0.7, 0.2, 0.3))


def test_resolve_keeps_singletons(audit64):
    rows, policy = resolve_duplicates(audit64)
    in_clusters = {i for c in audit64.clusters for i in c}
    singles = {audit64.faces.names[i] for i in range(len(audit64.faces.names)) if i not in in_clusters}
    assert singles <= {r.file for r in rows}
