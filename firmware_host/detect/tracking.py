"""Faces followed across frames by box overlap (IoU), with age and gender smoothed per track."""
from __future__ import annotations

from dataclasses import dataclass


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face over time: smoothed age, spread and probability of female; frames seen and missed."""

    id: int
    box: tuple
    age: float
    age_std: float
    female: float
    hits: int = 1
    missed: int = 0


class IouTracker:
    """Greedy IoU matching; a track survives ``max_missed`` frames unseen. Age and gender are
    exponential moving averages with weight ``alpha`` on the new value (1 = no smoothing)."""

    def __init__(self, threshold: float = 0.3, max_missed: int = 5, alpha: float = 0.3):
        self.threshold, self.max_missed, self.alpha = threshold, max_missed, alpha
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes: list[tuple], predictions: list) -> list[Track]:
        """Match this frame's boxes (with their predictions) to tracks; returns the track of each box."""
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        matched: dict[int, Track] = {}
        used = set()
        for overlap, ti, bi in pairs:
            if overlap < self.threshold:
                break
            if ti in used or bi in matched:
                continue
            used.add(ti)
            matched[bi] = self._follow(self.tracks[ti], boxes[bi], predictions[bi])
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi, box in enumerate(boxes):
            if bi not in matched:
                p = predictions[bi]
                matched[bi] = Track(self.next_id, tuple(box), p.age, p.age_std, p.female)
                self.next_id += 1
                self.tracks.append(matched[bi])
        return [matched[bi] for bi in range(len(boxes))]

    def _follow(self, track: Track, box: tuple, p) -> Track:
        a = self.alpha
        track.box, track.hits, track.missed = tuple(box), track.hits + 1, 0
        track.age = (1 - a) * track.age + a * p.age
        track.age_std = (1 - a) * track.age_std + a * p.age_std
        track.female = (1 - a) * track.female + a * p.female
        return track

