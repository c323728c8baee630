"""Figures of the evaluation page: age-group confusion, gender ROC, error by group (PNG), face montages (JPEG)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_age.eval.metrics import group_accuracy, roc_curve
from edge_age.report.page import pyplot, save_figure
from firmware_host.files import atomic

TILE = 96  # montage tile size in pixels
FONT = cv2.FONT_HERSHEY_SIMPLEX


def confusion_heatmap(confusion: list[list[int]], groups: list[str], path: Path) -> Path:
    """Row-normalised shares of (true, predicted) age group, each cell labelled with its share."""
    plt = pyplot()
    counts = np.asarray(confusion, float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    exact, one_off = group_accuracy(confusion)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), share in np.ndenumerate(shares):
        if counts[i, j]:
            ax.text(j, i, f"{share:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share > 0.55 else "#222")
    ax.set_xticks(range(len(groups)), groups, rotation=45)
    ax.set_yticks(range(len(groups)), [f"{g} (n={int(t)})" for g, t in zip(groups, totals[:, 0])])
    ax.set(xlabel="predicted age group", ylabel="true age group",
           title=f"Age groups, shares of each true group\nexact {exact:.1%}, within one group {one_off:.1%}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true group")
    return save_figure(fig, path)


def gender_roc(female: np.ndarray, is_female: np.ndarray, auc: float, path: Path, threshold: float = 0.5) -> Path:
    """ROC curve of the probability of female, with the operating point at ``threshold``."""
    plt = pyplot()
    female, is_female = np.asarray(female, float), np.asarray(is_female, bool)
    fpr, tpr = roc_curve(female, is_female)
    op_tpr, op_fpr = float(np.mean(female[is_female] >= threshold)), float(np.mean(female[~is_female] >= threshold))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, color="#aa3377", lw=2, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    ax.plot([op_fpr], [op_tpr], "o", color="k",
            label=f"threshold {threshold}: TPR {op_tpr:.1%}, FPR {op_fpr:.1%}")
    ax.set(xlabel="false positive rate (men called women)", ylabel="true positive rate (women found)",
           title=f"Gender ROC (positive: female; {int(is_female.sum())} women, {int((~is_female).sum())} men)",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def error_by_group(breakdown: dict, path: Path) -> Path:
    """Bars of the MAE by gender and by race, with the number of faces on each bar."""
    plt = pyplot()
    kinds = [k for k in ("gender", "race") if breakdown.get(k)]
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(4 + 2.5 * len(kinds), 3.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        names = list(breakdown[kind])
        bars = ax.bar(names, [breakdown[kind][n]["mae"] for n in names], color="#4477aa")
        ax.bar_label(bars, [f"n={breakdown[kind][n]['n']}" for n in names], fontsize=8)
        ax.set(ylabel="mean absolute error (years)", title=f"Error by {kind}")
        ax.margins(y=0.15)
    return save_figure(fig, path)


def face_montage(rows: list[tuple[str, list[tuple[np.ndarray, str]]]], path: Path) -> Path:
    """Rows of RGB faces as one JPEG, a label left of each row and a caption (``a · b``: two lines) under each face."""
    cols = max(len(faces) for _, faces in rows)
    left, cell_w, cell_h = 64, TILE + 8, TILE + 30
    mosaic = np.full((len(rows) * cell_h + 4, left + cols * cell_w, 3), 255, np.uint8)
    for r, (label, faces) in enumerate(rows):
        y = r * cell_h + 4
        cv2.putText(mosaic, label, (4, y + TILE // 2), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for c, (rgb, caption) in enumerate(faces):
            x = left + c * cell_w
            mosaic[y:y + TILE, x:x + TILE] = cv2.resize(
                rgb, (TILE, TILE), interpolation=cv2.INTER_AREA if rgb.shape[0] > TILE else cv2.INTER_LINEAR)
            for k, line in enumerate(caption.split(" · ")):
                cv2.putText(mosaic, line, (x, y + TILE + 12 + 12 * k), FONT, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return atomic.write_bytes(path, data.tobytes())
