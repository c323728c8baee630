"""Anomalies in a face set: malformed names, unreadable files, duplicates and label conflicts.

Byte-identical images share a SHA-256. Near-duplicates (the same photo re-encoded,
re-cropped or re-exposed) are pairs whose 64-bit DCT perceptual hashes differ in at
most ``NEAR_HASH_BITS`` bits **and** whose 32x32 grey thumbnails correlate at
``NEAR_MIN_CORRELATION`` or more; the hash alone also pairs different people with
similar poses. Both thresholds were read off utkface64, where same-photo pairs sit
at correlation 0.97 to 1.0 and different people below 0.95.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np

from edge_age.data.faceset import FaceSet
from edge_age.data.names import parse_name

NEAR_HASH_BITS = 8
NEAR_MIN_CORRELATION = 0.95
_BLOCK = 1024


def components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size >= 2) of ``pairs`` over nodes ``0..n-1``, each sorted."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def exact_pairs(faces: FaceSet) -> list[tuple[int, int]]:
    """Pairs of byte-identical images (each linked to the first of its kind)."""
    first: dict[str, int] = {}
    pairs = []
    for i, digest in enumerate(faces.sha256):
        if digest in first:
            pairs.append((first[digest], i))
        else:
            first[digest] = i
    return pairs


def _grey_thumbnails(images: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm 32x32 grey thumbnails, one row per image."""
    rows = np.empty((len(images), 32 * 32), np.float32)
    for i, img in enumerate(images):
        grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        rows[i] = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).ravel()
    rows -= rows.mean(axis=1, keepdims=True)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True) + 1e-6
    return rows


def near_pairs(faces: FaceSet, max_bits: int = NEAR_HASH_BITS,
               min_corr: float = NEAR_MIN_CORRELATION) -> list[tuple[int, int]]:
    """Pairs of visually identical images that are not byte-identical."""
    hashes, n = faces.phash, len(faces.phash)
    thumbs = _grey_thumbnails(faces.images) if n else None
    pairs = []
    for start in range(0, n, _BLOCK):
        dist = np.bitwise_count(hashes[start:start + _BLOCK, None] ^ hashes[None, :])
        rows, cols = np.nonzero(dist <= max_bits)
        rows += start
        keep = cols > rows
        for i, j in zip(rows[keep].tolist(), cols[keep].tolist()):
            if faces.sha256[i] != faces.sha256[j] and float(thumbs[i] @ thumbs[j]) >= min_corr:
                pairs.append((i, j))
    return pairs


@dataclass
class Audit:
    """Duplicate structure of a face set. Groups are lists of image indices."""

    faces: FaceSet
    exact_groups: list[list[int]]
    near_groups: list[list[int]]
    clusters: list[list[int]]
    conflicting: list[list[int]]

    def summary(self) -> dict:
        """The counts written to ``audit.json``."""
        labels = self.faces.labels
        return {
            "images": len(self.faces.names) + len(self.faces.unreadable),
            "parsed": sum(lab.usable for lab in labels),
            "malformed": sum(lab.malformed for lab in labels) + sum(parse_name(n).malformed for n,
                                                                    _ in self.faces.unreadable),
            "recovered": sum(lab.usable and lab.malformed for lab in labels),
            "set_aside": sum(not lab.usable for lab in labels),
            "unreadable": len(self.faces.unreadable),
            "ignored_files": len(self.faces.ignored),
            "duplicate_groups": len(self.exact_groups),
            "duplicate_images": sum(len(g) for g in self.exact_groups),
            "near_duplicate_groups": len(self.near_groups),
            "near_duplicate_images": sum(len(g) for g in self.near_groups),
            "conflicting_groups": len(self.conflicting),
            "conflicting_images": sum(len(g) for g in self.conflicting),
            "near_duplicate_rule": {"hash": "pHash (64-bit DCT)", "max_hamming_bits": NEAR_HASH_BITS,
                                    "min_grey_correlation": NEAR_MIN_CORRELATION},
        }


def label_tuples(faces: FaceSet, group: list[int]) -> set[tuple[int, int, int]]:
    """The distinct ``(age, gender, race)`` labels of a group's readable names."""
    return {(faces.labels[i].age, faces.labels[i].gender, faces.labels[i].race)
            for i in group if faces.labels[i].usable}


def audit_faces(faces: FaceSet) -> Audit:
    """Find byte-identical and near-duplicate groups and those whose labels disagree."""
    n = len(faces.names)
    exact = exact_pairs(faces)
    near = near_pairs(faces)
    exact_groups = components(n, exact)
    # near-duplicate groups: at least two different contents that look the same
    near_groups = [g for g in components(n, exact + near) if len({faces.sha256[i] for i in g}) > 1]
    clusters = components(n, exact + near)
    conflicting = [g for g in clusters if len(label_tuples(faces, g)) > 1]
    return Audit(faces, exact_groups, near_groups, clusters, conflicting)
