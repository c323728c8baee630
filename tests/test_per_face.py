"""``edge-age evaluate --per-face``: each face's labels and estimates, the rows the scores come from."""
import csv
import json

import numpy as np
import pytest

from tests.conftest import UTK64, assert_user_error, run_cli, sample_names


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    names = sample_names(UTK64, 30)
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    rows = [(n, *n.split("_")[:2]) for n in names]
    path.write_text("file,age,gender\n" + "".join(f"{n},{a},{g}\n" for n, a, g in rows))
    return path, rows


def test_per_face_rows_match_the_labels_and_the_scores(labels, tmp_path):
    path, rows = labels
    proc = run_cli("evaluate", "n", "--data", UTK64, "--labels", path, "--json", tmp_path / "n.json",
                   "--per-face", tmp_path / "faces.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    faces = list(csv.DictReader((tmp_path / "faces.csv").open()))
    assert list(faces[0]) == ["file", "true_age", "true_gender", "age", "female"]
    assert [(f["file"], f["true_age"], f["true_gender"]) for f in faces] == rows
    ages = np.array([float(f["age"]) for f in faces])
    female = np.array([float(f["female"]) for f in faces])
    assert ((ages >= 0) & (ages <= 116)).all() and ((female >= 0) & (female <= 1)).all() and ages.std() > 1
    scores = json.loads((tmp_path / "n.json").read_text())
    true = np.array([int(f["true_age"]) for f in faces])
    assert scores["n"] == 30 and np.mean(np.abs(ages - true)) == pytest.approx(scores["mae"], abs=1e-3)
    accuracy = np.mean((female >= 0.5) == np.array([f["true_gender"] == "1" for f in faces]))
    assert accuracy == pytest.approx(scores["gender_accuracy"])


def test_per_face_onto_a_folder_is_a_user_error(labels, tmp_path):
    (tmp_path / "faces.csv").mkdir()
    proc = run_cli("evaluate", "n", "--data", UTK64, "--labels", labels[0], "--per-face", tmp_path / "faces.csv")
    assert_user_error(proc, "faces.csv")
