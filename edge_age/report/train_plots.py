"""PNG plots of training and evaluation."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_age.eval.metrics import error_by_age
from edge_age.report.page import pyplot, save_figure
from firmware_host.files.csvio import read_rows


def predicted_vs_true(pred: np.ndarray, true: np.ndarray, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, pred, s=4, alpha=0.35)
    top = max(float(np.max(true)), float(np.max(pred)), 1.0)
    ax.plot([0, top], [0, top], color="k", lw=1)
    ax.set(xlabel="true age", ylabel="predicted age", title=f"Predicted against true age (n={len(true):,})")
    return save_figure(fig, path)


def error_by_age_bars(pred: np.ndarray, true: np.ndarray, path: Path) -> Path:
    """Mean absolute error by true age of one model, as bars (bins from ``metrics.error_by_age``)."""
    plt = pyplot()
    bins = error_by_age(pred, true)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(np.array(bins["age_from"]) + bins["width"] / 2, bins["mae"], width=bins["width"] * 0.9, color="#4477aa")
    ax.set(xlabel="true age (5-year bins)", ylabel="mean absolute error (years)", title="Error by age")
    return save_figure(fig, path)


def training_curves(run: Path) -> Path | None:
    """Loss and validation MAE per epoch of each phase, from the run's history CSVs."""
    history = read_history(run)
    if not history:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    offset = 0
    for phase, rows in history.items():
        epochs = np.arange(1, len(rows) + 1) + offset
        offset += len(rows)
        mae_key = next((k for k in rows[0] if k.startswith("val_") and "mae_years" in k), None)
        ax1.plot(epochs, [float(r["loss"]) for r in rows], label=f"{phase} train")
        ax1.plot(epochs, [float(r["val_loss"]) for r in rows], "--", label=f"{phase} val")
        if mae_key:
            ax2.plot(epochs, [float(r[mae_key]) for r in rows], label=phase)
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    ax2.set(xlabel="epoch", ylabel="years", title="Validation MAE")
    ax1.legend()
    ax2.legend()
    return save_figure(fig, run / "curves.png")


def read_history(run: Path) -> dict[str, list[dict]]:
    """The per-epoch logs of each phase."""
    out = {}
    for phase in ("float", "qat"):
        path = run / f"history_{phase}.csv"
        if path.is_file():
            out[phase] = read_rows(path, "history file")
    return out


def training_minutes(history: dict[str, list[dict]]) -> float | None:
    """Wall minutes of a run's finished epochs, float and QAT, from the ``seconds`` of each row of its
    ``read_history`` (the last row of an epoch a resumed process logged again): every process that trained the run
    counts. None without history."""
    seconds = {}
    for phase, rows in history.items():
        for row in rows:
            if row.get("seconds"):
                seconds[phase, row.get("epoch")] = float(row["seconds"])
    return round(sum(seconds.values()) / 60, 2) if seconds else None
