"""pi-check's comparison and report on synthetic per-face outputs of the two sides."""
import csv
import json
import re

import numpy as np
import pytest

from edge_age.bench.pi_check import compare, compare_faces, markdown, write_report
from firmware_host.errors import EdgeAgeError

FILES = [f"{i}_0_0_2017.jpg.chip.jpg" for i in range(200)]


def per_face(ages, females, true_ages) -> list[dict]:
    return [{"file": f, "true_age": str(t), "true_gender": "0", "age": f"{a:.4f}", "female": f"{g:.5f}"}
            for f, a, g, t in zip(FILES, ages, females, true_ages)]


def write_csv(path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_per_face_differences_and_the_verdict_by_hand():
    true = np.full(200, 30)
    x86 = per_face(np.full(200, 32.0), np.full(200, 0.5), true)  # MAE 2
    shift = np.zeros(200)
    shift[:99], shift[199] = 0.1, 3.0  # median |Δ| 0.05, max 3; MAE moves by (99 * 0.1 + 3) / 200 = 0.0645
    arm = per_face(32.0 + shift, np.full(200, 0.5) - shift / 100, true)
    result = compare_faces(x86, list(reversed(arm)))  # matched by file, not by order
    assert result["faces"] == 200 and result["mae"]["x86"] == pytest.approx(2.0)
    assert result["mae_difference"] == pytest.approx(0.0645) and result["pass"]
    assert result["age_difference"]["median"] == pytest.approx(0.05)
    assert result["age_difference"]["max"] == pytest.approx(3.0)
    assert result["female_difference"]["max"] == pytest.approx(0.03)
    assert 0.1 <= result["age_difference"]["p99"] <= 3.0

    worse = per_face(32.0 + np.full(200, 0.2), np.full(200, 0.5), true)  # every face 0.2 years older
    failed = compare_faces(x86, worse)
    assert not failed["pass"] and failed["mae_difference"] == pytest.approx(0.2)


def test_different_faces_on_the_two_sides_is_an_error():
    true = np.full(200, 30)
    with pytest.raises(EdgeAgeError, match="different faces"):
        compare_faces(per_face(np.full(200, 30.0), np.full(200, 0.5), true),
                      per_face(np.full(199, 30.0), np.full(199, 0.5), true))


def test_report_from_both_sides_outputs(tmp_path):
    true = np.arange(200) % 80
    for side, offset in (("x86", 0.0), ("arm64", 0.3)):
        write_csv(tmp_path / side / "faces_s.csv", per_face(true + 4.0, np.full(200, 0.2), true))
        write_csv(tmp_path / side / "faces_n.csv", per_face(true + 4.0 + offset, np.full(200, 0.2), true))
        photos = [{"file": "a.jpg", "face": 0, "x": 10, "y": 10, "w": 50, "h": 50, "age": 30 + offset, "female": 0.9},
                  {"file": "b.jpg", "face": -1, "x": "", "y": "", "w": "", "h": "", "age": "", "female": ""}]
        write_csv(tmp_path / side / "predict" / "faces.csv", photos)
        (tmp_path / side / "bench").mkdir()
        (tmp_path / side / "bench" / "bench.json").write_text(json.dumps({"status": "complete"}))

    result = compare(tmp_path, ["s", "n"])
    assert result["members"]["s"]["pass"] and not result["members"]["n"]["pass"] and not result["pass"]
    assert result["members"]["n"]["mae_difference"] == pytest.approx(0.3)
    p = result["predict"]
    assert p["photos"] == 2 and p["faces"] == {"x86": 1, "arm64": 1} and p["matched"] == 1
    assert p["age_difference"]["max"] == pytest.approx(0.3) and p["box_difference_px"]["max"] == 0

    write_report(result, tmp_path)
    text = (tmp_path / "pi-check.md").read_text()
    assert text == markdown(result)
    assert "| s | 200 | 4.000 | 4.000 | +0.000 |" in text and "| FAIL |" in text
    assert "**FAIL**: s pass (+0.000 years), n FAIL (+0.300 years)" in text
    assert "not reported" in text and not re.search(r"\d\s*ms\b", text)  # no emulated latency as a figure
    assert json.loads((tmp_path / "pi-check.json").read_text())["members"]["n"]["pass"] is False
