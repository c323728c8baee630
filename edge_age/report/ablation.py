"""The ablation table of the training recipe, from the run folders of ``make ablation``.

    python -m edge_age.report.ablation runs/ablation

Each sub-folder is one ``edge-age train`` run. Its row: what it changes against the ``control``
run (``config.json``), the float epochs it ran and their wall time (``history_float.csv``,
``seconds`` per epoch: on a shared machine these are noisy), and the validation MAE, CS@5 and
gender accuracy of its saved model (``metrics.json``). Choices are made on validation; the test
MAE is there for information only. Runs that differ from the control only in their seed give the
seed spread, the noise a difference must beat. Writes ``ablation.md`` and ``ablation.json`` there.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from edge_age.report.page import md_table
from edge_age.report.train_plots import read_history
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json

CONTROL = "control"
FIGURES = ("mae", "cs5", "gender_accuracy")


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _changes(config: dict, control: dict) -> dict:
    """The settings in which ``config`` differs from ``control`` (the model's spec included, as ``spec.*``). A
    setting one of them does not record (it came after that run) was off there: it counts only when set."""
    flat = {**{k: v for k, v in config.items() if k != "spec"},
            **{f"spec.{k}": v for k, v in config.get("spec", {}).items()}}
    base = {**{k: v for k, v in control.items() if k != "spec"},
            **{f"spec.{k}": v for k, v in control.get("spec", {}).items()}}
    changed = {k: v for k, v in flat.items() if (base[k] != v if k in base else bool(v))}
    if changed.get("soft_targets"):
        changed["soft_targets"] = Path(changed["soft_targets"]).parent.name  # the teacher's folder
    return changed


def run_row(run: Path, control: dict) -> dict:
    """One run's settings, epochs, time and figures (validation and test)."""
    config, metrics = _read(run / "config.json"), _read(run / "metrics.json")
    history = read_history(run).get("float", [])
    seconds = [float(r["seconds"]) for r in history if r.get("seconds")]
    validation = metrics.get("validation", {}).get("float", {})
    return {"name": run.name, "finished": bool(metrics), "changes": _changes(config, control),
            "seed": config.get("seed"), "epochs": len(history),
            "seconds_per_epoch": round(statistics.median(seconds), 1) if seconds else None,
            "minutes": round(sum(seconds) / 60, 1) if seconds else metrics.get("train_minutes"),
            "validation": {k: validation[k] for k in FIGURES if k in validation},
            "test_mae": metrics.get("float", {}).get("mae")}


def seed_spread(rows: list[dict]) -> dict | None:
    """|difference| of each validation figure between the control and the finished runs that differ from it only
    in their seed (the largest when there are several)."""
    control = next((r for r in rows if r["name"] == CONTROL and r["finished"]), None)
    twins = [r for r in rows if r["finished"] and r["name"] != CONTROL and set(r["changes"]) == {"seed"}]
    if not control or not twins:
        return None
    spread = {k: max(abs(t["validation"][k] - control["validation"][k]) for t in twins)
              for k in FIGURES if all(k in r["validation"] for r in (control, *twins))}
    return {"runs": [CONTROL, *(t["name"] for t in twins)], "seeds": [control["seed"], *(t["seed"] for t in twins)],
            **spread}


def _changes_text(changes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "-"


def _fig(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def ablation_table(rows: list[dict], spread: dict | None) -> str:
    control = next((r for r in rows if r["name"] == CONTROL and r["finished"]), None)
    base = control["validation"].get("mae") if control else None
    table = []
    for r in rows:
        v = r["validation"]
        delta = v["mae"] - base if base is not None and "mae" in v else None
        table.append([r["name"] + ("" if r["finished"] else " (unfinished)"), _changes_text(r["changes"]),
                      r["epochs"], _fig(r["seconds_per_epoch"], ".0f"), _fig(r["minutes"], ".1f"),
                      _fig(v.get("mae"), ".3f"), _fig(delta, "+.3f"), _fig(v.get("cs5"), ".1%"),
                      _fig(v.get("gender_accuracy"), ".1%"), _fig(r["test_mae"], ".3f")])
    lines = ["# Ablation of the training recipe\n",
             "Each run changes the control in what its row says. Decisions are made on the validation side; the "
             "test MAE is for information only. Seconds per epoch (training and validation, median) and minutes "
             "are wall time on a shared machine.\n",
             md_table(["run", "changes against control", "epochs", "s/epoch", "minutes", "val MAE",
                       "val MAE - control", "val CS@5", "val gender", "test MAE"], table)]
    if spread:
        lines.append(f"Seed spread of the control ({', '.join(spread['runs'])}, seeds "
                     f"{', '.join(map(str, spread['seeds']))}): validation MAE {_fig(spread.get('mae'), '.3f')}, "
                     f"CS@5 {_fig(spread.get('cs5'), '.1%')}, gender {_fig(spread.get('gender_accuracy'), '.1%')}. "
                     "A difference smaller than this is noise.\n")
    else:
        lines.append("No seed spread yet: the control and its second seed have not both finished.\n")
    return "\n".join(lines)


def write_ablation(folder: Path) -> Path:
    """``ablation.md`` and ``ablation.json`` from every run folder (one with a ``config.json``) in ``folder``."""
    folder = Path(folder)
    control = _read(folder / CONTROL / "config.json")
    runs = sorted((p for p in folder.iterdir() if (p / "config.json").is_file()),
                  key=lambda p: (p.name != CONTROL, p.name))
    rows = [run_row(p, control) for p in runs]
    spread = seed_spread(rows)
    write_json(folder / "ablation.json", {"control": CONTROL, "runs": rows, "seed_spread": spread})
    return atomic.write_text(folder / "ablation.md", ablation_table(rows, spread))


if __name__ == "__main__":
    print(write_ablation(Path(sys.argv[1])).read_text())
