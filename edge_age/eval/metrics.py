"""Accuracy metrics for age and gender predictions (numpy only: the device bench uses them too)."""
from __future__ import annotations

import numpy as np

from edge_age.data.split import AGE_BINS, age_bin, age_bin_label

EPSILON_SIGMA = 4.0  # the spread used for the epsilon error when no per-face spread is known


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(true, float))))


def cs(pred: np.ndarray, true: np.ndarray, years: float = 5.0) -> float:
    """Cumulative score: share of faces whose age error is at most ``years``."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(true, float)) <= years))


def epsilon_error(pred: np.ndarray, true: np.ndarray, sigma: float | np.ndarray = EPSILON_SIGMA) -> float:
    """Mean of ``1 - exp(-(pred - mu)^2 / (2 sigma^2))``."""
    d = np.asarray(pred, float) - np.asarray(true, float)
    return float(np.mean(1.0 - np.exp(-(d**2) / (2.0 * np.asarray(sigma, float) ** 2))))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last face of each distinct score
    tp, fp = np.cumsum(hits)[last], np.cumsum(~hits)[last]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def group_accuracy(confusion: list[list[int]]) -> tuple[float, float]:
    """Share of faces put in their true age group, and within one group of it."""
    m = np.asarray(confusion)
    i, j = np.indices(m.shape)
    n = max(int(m.sum()), 1)
    return float(np.trace(m)) / n, float(m[np.abs(i - j) <= 1].sum()) / n


def age_confusion(pred: np.ndarray, true: np.ndarray) -> list[list[int]]:
    """Counts of (true age group, predicted age group)."""
    k = len(AGE_BINS)
    m = np.zeros((k, k), dtype=int)
    for p, t in zip(pred, true):
        m[age_bin(int(t)), age_bin(int(round(float(p))))] += 1
    return m.tolist()


def error_by_age(pred, true, width: int = 5) -> dict:
    """Mean absolute error in ``width``-year bins of the true age (bins with faces only)."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    which = (true // width).astype(int)
    err = np.abs(pred - true)
    bins = sorted(set(which.tolist()))
    return {"width": width, "age_from": [b * width for b in bins],
            "mae": [float(err[which == b].mean()) for b in bins], "n": [int((which == b).sum()) for b in bins]}


def age_metrics(pred_age, true_age, pred_gender=None, true_gender=None) -> dict:
    """MAE, CS@5, epsilon error and, where gender labels are known, gender accuracy and ROC AUC."""
    pred_age, true_age = np.asarray(pred_age, float), np.asarray(true_age, float)
    out = {"n": int(len(true_age)), "mae": mae(pred_age, true_age), "cs5": cs(pred_age, true_age),
           "epsilon_error": epsilon_error(pred_age, true_age)}
    if pred_gender is not None and true_gender is not None:
        known = np.asarray(true_gender) >= 0
        if known.any():
            g_true, g_pred = np.asarray(true_gender)[known], np.asarray(pred_gender, float)[known]
            out["gender_accuracy"] = float(np.mean((g_pred >= 0.5) == (g_true == 1)))
            out["gender_auc"] = roc_auc(g_pred, g_true == 1)
    return out


def breakdown(pred_age, true_age, pred_gender, true_gender, true_race) -> dict:
    """MAE and gender accuracy by age group, by gender and by race."""
    from edge_age.data.names import RACES
    true_age = np.asarray(true_age)
    groups = {
        "age_group": ({age_bin_label(b): np.array([age_bin(int(a)) == b for a in true_age])
                       for b in range(len(AGE_BINS))}),
        "gender": {"male": np.asarray(true_gender) == 0, "female": np.asarray(true_gender) == 1},
        "race": {name: np.asarray(true_race) == code for code, name in enumerate(RACES)},
    }
    out: dict = {}
    for kind, masks in groups.items():
        out[kind] = {}
        for name, mask in masks.items():
            if mask.any():
                sel = [None if a is None else np.asarray(a)[mask] for a in (pred_age, true_age, pred_gender,
                                                                            true_gender)]
                out[kind][name] = age_metrics(*sel)
    return out
