"""Distillation: the loss on hand-made distributions, soft targets and their fingerprints, a distilled run."""
import json

import numpy as np
import pytest

from tests.conftest import TINY, assert_user_error, run_cli


def _kl(p, q):
    return float(np.sum(p * (np.log(p + 1e-8) - np.log(q))))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_distillation_loss_is_exact_on_hand_made_distributions():
    from edge_age.train.losses import ldl_loss
    label = np.array([0.1, 0.6, 0.3], np.float32)
    teacher = np.array([0.2, 0.5, 0.3], np.float32)
    logits = np.array([0.5, 1.5, -0.25], np.float32)
    for weight, temperature in ((0.0, 1.0), (1.0, 1.0), (0.5, 1.0), (0.3, 2.0)):
        expected = ((1 - weight) * _kl(label, _softmax(logits))
                    + weight * temperature ** 2 * _kl(teacher, _softmax(logits / temperature)))
        got = ldl_loss(weight, temperature)(np.concatenate([label, teacher])[None], logits[None])
        assert float(got[0]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # targets without the teacher's columns (validation) give the label term alone
    assert float(ldl_loss(0.5, 2.0)(label[None], logits[None])[0]) == pytest.approx(
        _kl(label, _softmax(logits)), rel=1e-5)
    # the soft term vanishes when the student matches the tempered teacher exactly
    match = np.log(teacher) * 2.0
    assert float(ldl_loss(1.0, 2.0)(np.concatenate([label, teacher])[None],
                                             match[None])[0]) == pytest.approx(0, abs=1e-5)


def test_tempered_distribution_is_the_softmax_of_its_log_over_t():
    from edge_age.data.pipeline import tempered
    p = np.array([[0.7, 0.2, 0.1]])
    assert tempered(p, 1.0) == pytest.approx(p)
    expected = np.sqrt(p) / np.sqrt(p).sum()
    assert tempered(p, 2.0) == pytest.approx(expected, rel=1e-6)


def test_mirrored_faces_get_the_mirrored_soft_targets():
    """With augmentation, a face that is flipped learns the teacher's targets for the flipped face."""
    from edge_age.data.pipeline import make_dataset
    from edge_age.data.soft_targets import SoftTargets
    n, ages = 8, 117
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    plain = np.zeros((n, ages), np.float32)
    plain[:, 10] = 1.0
    mirror = np.zeros((n, ages), np.float32)
    mirror[:, 90] = 1.0
    st = SoftTargets([str(i) for i in range(n)], plain, mirror, np.zeros(n, np.float32), np.ones(n, np.float32), {})
    ds = make_dataset(images, np.full(n, 30), np.zeros(n, np.int64), batch_size=n, training=True, augment=1.0,
                      teacher=st, gender_weight=1.0)
    seen = set()
    for _ in range(3):
        _, targets, _ = next(iter(ds))
        soft = targets["age"].numpy()[:, ages:]
        female = targets["gender"].numpy()[:, 0]
        for row, f in zip(soft, female):
            peak = int(np.argmax(row))
            assert (peak, f) in ((10, 0.0), (90, 1.0))
            seen.add(peak)
    assert seen == {10, 90}


@pytest.fixture(scope="module")
def teacher_dir(tiny_run, faces, split, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    proc = run_cli("teacher", tiny_run / "model.keras", "--data", faces, "--split", split, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_teacher_writes_soft_targets_with_fingerprints(teacher_dir, split):
    from edge_age.data.soft_targets import read_soft_targets
    from firmware_host.files.paths import file_sha256
    with np.load(teacher_dir / "soft_targets.npz") as z:
        meta = json.loads(str(z["meta"]))
        assert z["age"].shape == z["age_mirror"].shape and z["age"].shape[1] == 117
        assert {z[k].dtype for k in ("age", "age_mirror", "female", "female_mirror")} == {np.dtype(np.float16)}
        assert np.allclose(z["age"].astype(np.float32).sum(axis=1), 1, atol=0.01)
        assert ((z["female"] >= 0) & (z["female"] <= 1)).all()
        n_files = len(z["files"])
    read = read_soft_targets(teacher_dir / "soft_targets.npz", data_fingerprint=meta["data_fingerprint"],
                             split_sha256=meta["split_sha256"])
    assert read.age.dtype == np.float32 and np.allclose(read.age.sum(axis=1), 1, atol=1e-5)
    assert meta["split_sha256"] == file_sha256(split)
    assert len(meta["data_fingerprint"]) >= 16
    from edge_age.data.split import read_split
    rows = read_split(split)
    assert n_files == len(rows.side("train")) + len(rows.side("val"))


def test_teacher_model_is_evaluated_like_any_model(teacher_dir, faces, split):
    proc = run_cli("evaluate", teacher_dir / "teacher.keras", "--data", faces, "--split", split)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MAE" in proc.stdout


def test_a_distilled_run_records_its_teacher(teacher_dir, faces, split, tmp_path):
    run = tmp_path / "student"
    proc = run_cli("train", "--data", faces, "--split", split, "--out", run, *TINY, "--qat-epochs", "0",
                   "--soft-targets", teacher_dir / "soft_targets.npz", "--teacher-weight", "0.7", "--temperature", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["teacher_weight"] == 0.7 and config["temperature"] == 2.0
    card = (run / "MODEL_CARD.md").read_text()
    assert "| teacher_weight | 0.7 |" in card and "soft_targets" in card
    device = json.loads((run / "device.json").read_text())
    assert device["chip_resolution"] == 64 and device["input_size"] == 32
    import csv
    with open(run / "history_float.csv") as f:
        history = list(csv.DictReader(f))
    assert float(history[-1]["gender_accuracy"]) > 0.3  # against the targets' side of 0.5, not exact 0 or 1


def test_soft_targets_refuse_another_split_or_data(teacher_dir, faces, split, tmp_path):
    other_split = tmp_path / "other.csv"
    proc = run_cli("data", "split", faces, "--out", other_split, "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--data", faces, "--split", other_split, "--out", tmp_path / "a", *TINY,
                   "--soft-targets", teacher_dir / "soft_targets.npz")
    assert_user_error(proc, "another split")
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for p in sorted(faces.iterdir())[:-1]:
        (fewer / p.name).write_bytes(p.read_bytes())
    proc = run_cli("train", "--data", fewer, "--split", split, "--out", tmp_path / "b", *TINY,
                   "--soft-targets", teacher_dir / "soft_targets.npz")
    assert_user_error(proc)  # the split or the fingerprint no longer matches
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not an npz")
    proc = run_cli("train", "--data", faces, "--split", split, "--out", tmp_path / "c", *TINY,
                   "--soft-targets", damaged)
    assert_user_error(proc, "not an edge-age soft-target file")
    with np.load(teacher_dir / "soft_targets.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["age"] = -arrays["age"]  # not a distribution any more
    negative = tmp_path / "negative.npz"
    np.savez_compressed(negative, **arrays)
    proc = run_cli("train", "--data", faces, "--split", split, "--out", tmp_path / "d", *TINY,
                   "--soft-targets", negative)
    assert_user_error(proc, "ages that are not distributions")


def test_a_run_with_every_recipe_option(teacher_dir, faces, split, tmp_path):
    """Expectation term, AdamW with a moving average of the weights (float and QAT), mixup, the re-centred
    teacher target and a label sigma, all at once: the run finishes and records each of them."""
    run = tmp_path / "recipe"
    options = {"expectation_weight": 0.5, "weight_decay": 0.01, "ema": 0.9, "mixup": 0.2,
               "teacher_target": "recentred", "sigma": 3.0}
    flags = [str(a) for k, v in options.items() for a in (f"--{k.replace('_', '-')}", v)]
    proc = run_cli("train", "--data", faces, "--split", split, "--out", run, *TINY, *flags,
                   "--soft-targets", teacher_dir / "soft_targets.npz")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert {k: config[k] for k in options} == options
    card = (run / "MODEL_CARD.md").read_text()
    for k, v in options.items():
        assert f"| {k} | {v} |" in card, k
    for words in ("re-centred on the label age", "0.5 x L1 of the expected age", "AdamW, weight decay 0.01",
                  "decay 0.9) validated and saved", "Beta(0.2, 0.2)", "sigma 3.0 years"):
        assert words in card, words
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["float"]["n"] > 0 and metrics["validation"]["qat"]["n"] > 0
    for phase in ("float", "qat"):
        history = (run / f"history_{phase}.csv").read_text().splitlines()
        assert "seconds" in history[0].split(",") and len(history) == 2
