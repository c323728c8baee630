"""The training recipe's options on hand-made data: the expectation term, the re-centred teacher target,
mixup's targets, the optimizer and the moving average of the weights that is validated and saved."""
from __future__ import annotations

import numpy as np
import pytest

AGES = np.arange(117, dtype=np.float64)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kl(p, q):
    return float(np.sum(p * (np.log(p + 1e-8) - np.log(q))))


def test_expectation_term_adds_the_l1_of_the_expected_age():
    from edge_age.train.losses import ldl_loss
    label = np.array([0.1, 0.6, 0.3], np.float32)
    teacher = np.array([0.2, 0.5, 0.3], np.float32)
    logits = np.array([0.5, 1.5, -0.25], np.float32)
    p = _softmax(logits)
    expected = float(p @ np.arange(3))                                       # 0.8759...
    age = 1.75
    got = ldl_loss(expectation_weight=2.0)(np.append(label, age).astype(np.float32)[None], logits[None])
    assert float(got[0]) == pytest.approx(_kl(label, p) + 2.0 * abs(expected - age), rel=1e-5)
    # with a teacher: the label age is the last column, after the teacher's
    with_teacher = np.concatenate([label, teacher, [age]]).astype(np.float32)[None]
    got = ldl_loss(0.3, 1.0, expectation_weight=0.5)(with_teacher, logits[None])
    assert float(got[0]) == pytest.approx(0.7 * _kl(label, p) + 0.3 * _kl(teacher, p) + 0.5 * abs(expected - age),
                                          rel=1e-5)
    # no label-age column: the mean of the label distribution (1.2) stands for the label age
    got = ldl_loss(expectation_weight=1.0)(label[None], logits[None])
    assert float(got[0]) == pytest.approx(_kl(label, p) + abs(expected - 1.2), rel=1e-5)
    # weight 0 is the plain KL of before
    plain = ldl_loss()(np.append(label, age).astype(np.float32)[None], logits[None])
    assert float(plain[0]) == pytest.approx(_kl(label, p), rel=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        ldl_loss()(np.zeros((1, 5), np.float32), logits[None])


def test_recentred_teacher_has_the_label_age_as_its_mean():
    from edge_age.data.pipeline import gaussian_targets, recentred
    rng = np.random.default_rng(0)
    # skewed, two-peaked teacher distributions far from the labels, plus labels near both ends of the range
    teacher = _softmax(rng.normal(0, 3, (6, 117)) - 0.02 * (AGES - rng.uniform(10, 90, (6, 1))) ** 2)
    labels = np.array([1, 5, 33.4, 60, 97.7, 115])
    out = recentred(teacher, labels)
    assert out.shape == teacher.shape and out.dtype == np.float32 and (out >= 0).all()
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(out @ AGES, labels, atol=0.01)
    # an interior shift by whole years moves the distribution as it is
    g30, g41 = gaussian_targets(np.array([30, 41]), sigma=3.0)
    assert np.allclose(recentred(g30[None], np.array([41.0]))[0], g41, atol=1e-6)
    # a fractional shift keeps the spread (linear interpolation widens it slightly) and the mean on the label
    half = recentred(g30[None], np.array([35.5]))[0]
    spread = np.sqrt(half @ (AGES - 35.5) ** 2)
    assert half @ AGES == pytest.approx(35.5, abs=1e-3) and 3.0 <= spread <= 3.1


def test_teacher_targets_plain_and_recentred():
    from edge_age.data.pipeline import gaussian_targets, teacher_targets
    from edge_age.data.soft_targets import SoftTargets
    ages = np.array([20, 70])
    dist = gaussian_targets(np.array([30, 60]), sigma=4.0)
    st = SoftTargets(["a", "b"], dist, dist[::-1].copy(), np.zeros(2, np.float32), np.ones(2, np.float32), {})
    plain, mirror = teacher_targets(st, ages)
    assert np.allclose(plain, dist, atol=1e-6) and np.allclose(mirror, dist[::-1], atol=1e-6)
    for out in teacher_targets(st, ages, temperature=2.0, target="recentred"):
        assert np.allclose(out @ AGES, ages, atol=0.01)
    with pytest.raises(ValueError, match="unknown teacher target"):
        teacher_targets(st, ages, target="median")


def _batch(images, ages, genders, **options):
    from edge_age.data.pipeline import make_dataset
    x, y, w = next(iter(make_dataset(images, ages, genders, batch_size=len(ages), **options)))
    return x.numpy(), y["age"].numpy(), y["gender"].numpy()[:, 0], w["gender"].numpy()


def test_mixup_mixes_faces_and_every_target_by_one_weight():
    from edge_age.data.pipeline import gaussian_targets
    from edge_age.data.soft_targets import SoftTargets
    from firmware_host.infer.preprocess import normalize
    n = 12
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    ages = np.arange(20, 20 + 5 * n, 5)                      # distinct and far from 0 and 116
    genders = np.array([0, 1, -1] * (n // 3))
    teacher = gaussian_targets(ages + 7, sigma=5.0)
    st = SoftTargets([str(i) for i in range(n)], teacher, teacher, rng.uniform(size=n).astype(np.float32),
                     rng.uniform(size=n).astype(np.float32), {})
    options = dict(teacher=st, gender_weight=0.0, label_age_column=True, mixup=0.4, augment=0.0, seed=3)
    x, age, female, weight = _batch(images, ages, genders, training=True, **options)
    label, soft, mixed_age = age[:, :117], age[:, 117:234], age[:, -1]
    assert np.allclose(label.sum(axis=1), 1, atol=1e-5) and np.allclose(soft.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(label @ AGES, mixed_age, atol=1e-3)   # the label mix's expected age is the mix of the ages
    assert np.allclose(soft @ AGES, mixed_age + 7, atol=1e-3)
    faces = normalize(images)
    lams = []
    for r in range(n):    # each row is lam * face i + (1 - lam) * face j, lam read off the ages
        found = []
        for i in range(n):
            for j in range(n):
                lam = 1.0 if i == j else (mixed_age[r] - ages[j]) / (ages[i] - ages[j])
                if -1e-4 <= lam <= 1 + 1e-4 and np.allclose(x[r], lam * faces[i] + (1 - lam) * faces[j], atol=1e-3):
                    found.append((i, j, lam))
        assert found, r
        i, j, lam = found[0]
        lams.append(min(lam, 1 - lam))
        known = [(lam, genders[i] >= 0, genders[i] == 1), (1 - lam, genders[j] >= 0, genders[j] == 1)]
        share = sum(s * k for s, k, _ in known)
        assert weight[r] == pytest.approx(share, abs=1e-5)
        if share > 0:
            assert female[r] == pytest.approx(sum(s * k * f for s, k, f in known) / share, abs=1e-5)
    assert max(lams) > 0.05                                  # something was mixed
    # the validation side is never mixed
    x, age, _, _ = _batch(images, ages, genders, training=False, **options)
    assert np.allclose(x, faces) and np.array_equal(age[:, -1], ages)


def test_recipe_options_are_checked():
    from edge_age.train.loop import TrainConfig
    from edge_age.train.models import ModelSpec
    from firmware_host.errors import EdgeAgeError
    for bad, message in ((dict(teacher_target="recentred"), "--soft-targets"),
                         (dict(teacher_target="median"), "unknown teacher target"),
                         (dict(ema=1.0), "--ema"), (dict(mixup=-0.2), "--mixup"),
                         (dict(weight_decay=-1.0), "--weight-decay"),
                         (dict(expectation_weight=1.0, spec=ModelSpec(head="regression")), "ldl")):
        with pytest.raises(EdgeAgeError) as err:
            TrainConfig(**bad).check()
        assert message in err.value.for_cli()
    # a config.json written before these options existed still reads, with today's behaviour
    old = TrainConfig().to_dict()
    for name in ("teacher_target", "expectation_weight", "weight_decay", "ema", "mixup"):
        old.pop(name)
    assert TrainConfig.from_dict(old) == TrainConfig()


def test_adamw_leaves_biases_and_batch_norm_alone():
    from converters.tf_setup import keras
    from edge_age.train.optimizers import make_optimizer
    k = keras()
    assert type(make_optimizer(1e-3)).__name__ == "Adam"
    opt = make_optimizer(1e-3, weight_decay=0.05, ema=0.99)
    assert type(opt).__name__ == "AdamW" and opt.use_ema and opt.ema_momentum == 0.99
    model = k.Sequential([k.Input((4,)), k.layers.Dense(3), k.layers.BatchNormalization()])
    opt.build(model.trainable_variables)
    decayed = {v.name.split("/")[-1].split(":")[0]: opt._use_weight_decay(v) for v in model.trainable_variables}
    assert decayed == {"kernel": True, "bias": False, "gamma": False, "beta": False}


def test_the_moving_average_is_validated_and_saved(tmp_path):
    """With --ema, validation scores the averaged weights and the best-epoch file holds them, not the raw ones;
    the backup of an unfinished phase keeps the average too."""
    from converters.tf_setup import keras
    from edge_age.data.pipeline import make_dataset
    from edge_age.train.loop import BestWeights, TrainConfig, compile_model, val_mae
    from edge_age.train.optimizers import AveragedValidation
    k = keras()
    k.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    ages, genders = rng.integers(1, 90, 48), rng.integers(0, 2, 48)
    image = k.Input((8, 8, 3))
    x = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3)(image))
    model = k.Model(image, {"age": k.layers.Dense(117, name="age")(x),
                            "gender": k.layers.Dense(1, activation="sigmoid", name="gender")(x)})
    compile_model(model, TrainConfig(ema=0.9), 1e-2)

    class Raw(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.weights = [w.copy() for w in self.model.get_weights()]
            self.logs = dict(logs)

    raw = Raw()
    train = make_dataset(images[:32], ages[:32], genders[:32], batch_size=8, training=True)
    val = make_dataset(images[32:], ages[32:], genders[32:], batch_size=16)
    backup = k.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(train, validation_data=val, epochs=1, verbose=0,
              callbacks=[backup, AveragedValidation(), BestWeights(tmp_path / "best.h5"), raw])
    averaged = [w.copy() for w in model.get_weights()]     # fit ends by writing the average into the model
    assert not all(np.allclose(a, b) for a, b in zip(averaged, raw.weights))
    model.load_weights(str(tmp_path / "best.h5"))
    for a, b in zip(model.get_weights(), averaged):
        np.testing.assert_array_equal(a, b)
    scored = model.evaluate(val, verbose=0, return_dict=True)
    assert val_mae({f"val_{key}": v for key, v in scored.items()}) == pytest.approx(val_mae(raw.logs), rel=1e-5)
    # a resumed phase gets the average back from the backup: fit, with no epoch left, writes it into the model
    again = k.models.clone_model(model)
    compile_model(again, TrainConfig(ema=0.9), 1e-2)
    again.fit(train, validation_data=val, epochs=1, verbose=0,
              callbacks=[k.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)])
    assert int(again.optimizer.iterations) == int(model.optimizer.iterations) == 4
    for a, b in zip(again.get_weights(), averaged):
        np.testing.assert_array_equal(a, b)
