"""The bundled reference model: present, loadable, and as accurate as its card says on real test faces."""
import json

import numpy as np
import pytest

from edge_age.train.models import REFERENCE_DIR, reference_model
from tests.conftest import UTK64


@pytest.fixture(scope="module")
def test_slice():
    """200 faces of the reference split's test side (the split is rebuilt: it is deterministic)."""
    from edge_age.data.audit import audit_faces
    from edge_age.data.faceset import load_faces
    from edge_age.data.split import make_split
    faces = load_faces(UTK64, size=int(json.loads((REFERENCE_DIR / "config.json").read_text())["spec"]["input_size"]))
    split = make_split(audit_faces(faces), seed=0)
    rows = split.side("test")[::10][:200]
    index = faces.index()
    idx = np.array([index[r.file] for r in rows])
    return np.asarray(faces.images[idx]), np.array([r.age for r in rows]), np.array([r.gender for r in rows])


def test_card_and_metrics_ship():
    card = (REFERENCE_DIR / "MODEL_CARD.md").read_text()
    metrics = json.loads((REFERENCE_DIR / "metrics.json").read_text())
    assert "Test metrics" in card and f"{metrics['qat']['mae']:.2f}" in card
    for phase in ("float", "qat"):
        assert metrics[phase]["n"] > 1500


@pytest.mark.parametrize("kind", ["float", "qat"])
def test_reference_predicts_real_faces(kind, test_slice):
    from edge_age.eval.evaluation import predict_keras
    from edge_age.eval.metrics import age_metrics
    from edge_age.train.model_io import load_model
    images, ages, genders = test_slice
    pred_age, pred_gender = predict_keras(load_model(reference_model(kind)), images)
    m = age_metrics(pred_age, ages, pred_gender, genders)
    card = json.loads((REFERENCE_DIR / "metrics.json").read_text())[kind]
    # a 200-face slice: within 1.5 years and 5 points of the full test side's figures
    assert abs(m["mae"] - card["mae"]) < 1.5
    assert m["gender_accuracy"] > card["gender_accuracy"] - 0.05
