"""The ablation table from run folders: changes against the control, time from the history, validation figures,
the control's seed spread."""
from __future__ import annotations

import json

import pytest

from edge_age.report.ablation import write_ablation

BASE = {"spec": {"arch": "mobilenet_v2", "alpha": 1.0, "input_size": 64}, "epochs": 8, "seed": 0, "sigma": 2.0,
        "mixup": 0.0, "soft_targets": None}


def _run(folder, name, *, figures=None, seconds=(), **changes):
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**BASE, **changes}))
    if seconds:
        (run / "history_float.csv").write_text("epoch,loss,seconds\n" + "".join(
            f"{i},1.0,{s}\n" for i, s in enumerate(seconds)))
    if figures:
        mae, cs5, gender = figures
        (run / "metrics.json").write_text(json.dumps({
            "float": {"mae": mae + 0.5}, "train_minutes": 1.0,
            "validation": {"float": {"mae": mae, "cs5": cs5, "gender_accuracy": gender, "n": 100}}}))


def test_ablation_table(tmp_path):
    _run(tmp_path, "control", figures=(6.0, 0.50, 0.90), seconds=(100, 90, 95))
    _run(tmp_path, "control-seed1", figures=(6.3, 0.48, 0.91), seconds=(99, 91), seed=1)
    _run(tmp_path, "mixup", figures=(5.8, 0.52, 0.90), seconds=(120, 118, 119), mixup=0.2)
    _run(tmp_path, "distil", soft_targets="runs/teacher/soft_targets.npz", seconds=(50,))  # unfinished
    md = write_ablation(tmp_path).read_text()
    table = json.loads((tmp_path / "ablation.json").read_text())
    rows = {r["name"]: r for r in table["runs"]}
    assert [r["name"] for r in table["runs"]][0] == "control"
    assert rows["mixup"]["changes"] == {"mixup": 0.2} and rows["control-seed1"]["changes"] == {"seed": 1}
    assert rows["distil"]["changes"] == {"soft_targets": "teacher"} and not rows["distil"]["finished"]
    assert rows["mixup"]["seconds_per_epoch"] == 119 and rows["mixup"]["minutes"] == pytest.approx(357 / 60, abs=0.05)
    assert rows["mixup"]["validation"] == {"mae": 5.8, "cs5": 0.52, "gender_accuracy": 0.90}
    assert rows["mixup"]["test_mae"] == 6.3
    spread = table["seed_spread"]
    assert spread["seeds"] == [0, 1] and spread["mae"] == pytest.approx(0.3) and spread["cs5"] == pytest.approx(0.02)
    assert "| mixup | mixup=0.2 | 3 | 119 | 6.0 | 5.800 | -0.200 | 52.0% | 90.0% | 6.300 |" in md
    assert "distil (unfinished)" in md and "validation MAE 0.300" in md


def test_no_spread_without_both_seeds(tmp_path):
    _run(tmp_path, "control", figures=(6.0, 0.5, 0.9))
    _run(tmp_path, "control-seed1", seed=1, seconds=(10,))
    md = write_ablation(tmp_path).read_text()
    assert "No seed spread yet" in md
    assert json.loads((tmp_path / "ablation.json").read_text())["seed_spread"] is None


def test_a_setting_the_control_does_not_record_counts_only_when_set(tmp_path):
    """The control ran before ``cut`` and ``ema`` existed: a run with them off differs only in its seed."""
    _run(tmp_path, "control", figures=(6.0, 0.5, 0.9))
    _run(tmp_path, "control-seed1", figures=(6.1, 0.5, 0.9), seed=1, ema=0.0,
         spec={**BASE["spec"], "cut": ""})
    _run(tmp_path, "cut", figures=(6.2, 0.5, 0.9), spec={**BASE["spec"], "cut": "block_13_expand_relu"})
    write_ablation(tmp_path)
    table = json.loads((tmp_path / "ablation.json").read_text())
    rows = {r["name"]: r for r in table["runs"]}
    assert rows["control-seed1"]["changes"] == {"seed": 1}
    assert rows["cut"]["changes"] == {"spec.cut": "block_13_expand_relu"}
    assert table["seed_spread"]["mae"] == pytest.approx(0.1)
