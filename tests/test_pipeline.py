"""The tf.data input pipeline, on real faces from the shared data folder."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")

from edge_age.data.names import parse_name  # noqa: E402  (after the importorskip)
from edge_age.data.pipeline import gaussian_targets, make_dataset  # noqa: E402  (after the importorskip)
from firmware_host.infer.preprocess import PIXEL_OFFSET, PIXEL_SCALE, normalize  # noqa: E402  (after the importorskip)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface64"
COUNT = 64
MAX_AGE = 116


@pytest.fixture(scope="module")
def faces():
    """64 real faces (uint8 RGB, read-only like a cached memmap) with ages and genders from their names."""
    if not DATA.is_dir():
        pytest.skip(f"no shared face data at {DATA}")
    paths = [p for p in sorted(DATA.glob("*.jpg")) if parse_name(p.name).usable][::300][:COUNT]
    labels = [parse_name(p.name) for p in paths]
    images = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
    images.setflags(write=False)
    return images, np.array([lab.age for lab in labels]), np.array([lab.gender for lab in labels])


def first_batch(ds):
    return next(iter(ds))


def test_batch_shapes_and_types(faces):
    images, ages, genders = faces
    x, targets, weights = first_batch(make_dataset(images, ages, genders, batch_size=16))
    assert x.shape == (16, 64, 64, 3) and x.dtype == tf.float32
    assert targets["age"].shape == (16, MAX_AGE + 1) and targets["age"].dtype == tf.float32
    assert targets["gender"].shape == (16, 1) and targets["gender"].dtype == tf.float32
    assert weights["age"].shape == weights["gender"].shape == (16,)
    np.testing.assert_array_equal(targets["gender"].numpy()[:, 0], genders[:16])


def test_last_batch_is_kept(faces):
    images, ages, genders = faces
    sizes = [int(b[0].shape[0]) for b in make_dataset(images, ages, genders, batch_size=24)]
    assert sizes == [24, 24, 16]


def test_unaugmented_pixels_are_the_shared_normalisation(faces):
    images, ages, genders = faces
    expected = normalize(images)
    x = first_batch(make_dataset(images, ages, genders, batch_size=COUNT, augment=0.0))[0].numpy()
    np.testing.assert_allclose(x, expected, atol=1e-6)
    shuffled = first_batch(make_dataset(images, ages, genders, batch_size=COUNT, training=True, augment=0.0))[0].numpy()
    flat, ref = shuffled.reshape(COUNT, -1), expected.reshape(COUNT, -1)
    match = np.abs(flat[:, None, :] - ref[None, :, :]).sum(axis=2).argmin(axis=1)
    assert sorted(match) == list(range(COUNT)) and not np.array_equal(match, np.arange(COUNT))
    np.testing.assert_allclose(shuffled, expected[match], atol=1e-6)


def test_gaussian_targets_sum_to_one_and_peak_at_the_age():
    ages = np.array([1, 2, 30, 80, 115, 116])
    targets = gaussian_targets(ages, sigma=2.0, max_age=MAX_AGE)
    assert targets.shape == (len(ages), MAX_AGE + 1) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(targets.argmax(axis=1), ages)
    with pytest.raises(ValueError):
        gaussian_targets(ages, sigma=0.0)


def test_pipeline_age_targets_match_the_labels(faces):
    images, ages, genders = faces
    _, targets, _ = first_batch(make_dataset(images, ages, genders, batch_size=COUNT, sigma=3.0))
    np.testing.assert_allclose(targets["age"].numpy(), gaussian_targets(ages, 3.0, MAX_AGE), atol=1e-7)


def test_augmentation_changes_pixels_within_range_and_is_seeded(faces):
    images, ages, genders = faces

    def epochs(seed):
        ds = make_dataset(images, ages, genders, batch_size=COUNT, training=True, augment=1.0, seed=seed)
        return [first_batch(ds)[0].numpy() for _ in range(2)]

    first, second = epochs(7)
    plain = first_batch(make_dataset(images, ages, genders, batch_size=COUNT, training=True, augment=0.0, seed=7))[0]
    assert first.min() >= -1.0 and first.max() <= 1.0
    assert np.abs(first - plain.numpy()).mean() > 0.05  # same shuffle order, so only the augmentation differs
    assert not np.array_equal(first, second)  # each epoch draws anew
    again = epochs(7)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, epochs(8)[0])


def test_unknown_gender_has_zero_weight(faces):
    images, ages, genders = faces
    genders = genders.copy()
    genders[::3] = -1
    _, targets, weights = first_batch(make_dataset(images, ages, genders, batch_size=COUNT))
    np.testing.assert_array_equal(weights["gender"].numpy(), (genders >= 0).astype(np.float32))
    np.testing.assert_array_equal(weights["age"].numpy(), np.ones(COUNT, np.float32))
    assert not targets["gender"].numpy()[genders == -1].any()


def test_bad_labels_are_refused(faces):
    images, ages, genders = faces
    with pytest.raises(ValueError, match="ages"):
        make_dataset(images, np.full(COUNT, MAX_AGE + 1), genders)
    with pytest.raises(ValueError, match="genders"):
        make_dataset(images, ages, np.full(COUNT, 3))
    with pytest.raises(ValueError):
        make_dataset(images, ages[:-1], genders)


@pytest.mark.parametrize("training", [False, True])
def test_input_size_resizes(faces, training):
    images, ages, genders = faces
    ds = make_dataset(images, ages, genders, batch_size=8, input_size=96, training=training)
    x = first_batch(ds)[0].numpy()
    assert x.shape == (8, 96, 96, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0
    if not training:
        expected = tf.image.resize(images[:8].astype(np.float32), (96, 96), method="bilinear").numpy()
        np.testing.assert_allclose(x, expected * PIXEL_SCALE + PIXEL_OFFSET, atol=1e-6)
