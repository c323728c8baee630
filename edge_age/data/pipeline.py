"""The tf.data input pipeline for training and evaluating the two-head age/gender model.

Each batch is ``(x, targets, sample_weight)``: ``x`` float32 RGB faces normalised
with the constants of :mod:`firmware_host.infer.preprocess` (the device uses the same),
``targets = {"age": Gaussian label distribution over ages 0..max_age,
"gender": 0./1. of shape [1]}`` and ``sample_weight = {"age": 1, "gender": 0 where
the gender is unknown (-1), else 1}``.

Images are gathered by index from one in-memory tensor, a whole batch at a time.
Augmentation (training only) works on 0..255 float pixels before normalisation:
flip, rotation, shift, scale and any resize to ``input_size`` as one bilinear
affine warp, then brightness and contrast, then clipping. It is deterministic
given ``seed``: each epoch reshuffles and redraws, the same way every run.
TensorFlow is imported inside the functions, so this module imports without it.

With a teacher's soft targets (distillation), the age target is the Gaussian
label followed by the teacher's tempered distribution (twice the columns: the
loss splits them), and the gender target mixes the label with the teacher's
P(female). A face the augmentation mirrors gets the teacher's mirrored targets.
The ``recentred`` teacher target is the teacher's distribution shifted so that its
mean is the label age: it adds the teacher's shape without moving the label's mean.

``label_age_column`` appends the label age to the age targets (the expectation term
of the loss reads it). ``mixup`` (training only) blends each face with another one of
its batch by a Beta(alpha, alpha) weight, and every target column (label and teacher
distributions, label age) and the gender target by the same weight.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from firmware_host.infer.preprocess import PIXEL_OFFSET, PIXEL_SCALE

if TYPE_CHECKING:
    import tensorflow as tf

    from edge_age.data.soft_targets import SoftTargets

MAX_ROTATION_DEG = 10.0
MAX_SHIFT = 0.08
MAX_SCALE = 0.10
MAX_BRIGHTNESS = 0.15  # fraction of the 0..255 range
MAX_CONTRAST = 0.20
TEACHER_TARGETS = ("plain", "recentred")  # the teacher's distribution as it is, or shifted onto the label's mean


def gaussian_targets(ages: np.ndarray, sigma: float = 2.0, max_age: int = 116) -> np.ndarray:
    """Per age, a Gaussian over the integer ages 0..max_age centred on it, summing to 1: float32 (N, max_age+1)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    grid = np.arange(max_age + 1, dtype=np.float64)
    dist = np.exp(-0.5 * ((grid[None, :] - np.asarray(ages, np.float64).reshape(-1, 1)) / sigma) ** 2)
    return (dist / dist.sum(axis=1, keepdims=True)).astype(np.float32)


def tempered(dist: np.ndarray, temperature: float) -> np.ndarray:
    """``dist ** (1/T)`` renormalised: the softmax of the distribution's log at temperature ``T``."""
    logp = np.log(np.clip(np.asarray(dist, np.float64), 1e-12, None)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)


def recentred(dist: np.ndarray, ages: np.ndarray, *, iterations: int = 30) -> np.ndarray:
    """Each row of ``dist`` (N, A) shifted along the ages so that its mean is ``ages`` (N,), renormalised.

    A shift by a fractional number of years interpolates linearly between neighbouring bins; mass
    shifted past either end of the age range falls off, so the shift is refined until the mean of
    what remains sits on the label (within 0.01 year unless the label is at the very edge)."""
    dist = np.asarray(dist, np.float64)
    n_ages = dist.shape[1]
    target = np.asarray(ages, np.float64).reshape(-1, 1)
    grid = np.arange(n_ages, dtype=np.float64)
    padded = np.pad(dist, ((0, 0), (1, 1)))  # a zero bin beyond each end
    rows = np.arange(len(dist))[:, None]
    shift = target - (dist * grid).sum(axis=1, keepdims=True)
    for _ in range(iterations):
        source = np.clip(grid[None, :] - shift, -1.0, float(n_ages))  # where each output bin reads from
        low = np.minimum(np.floor(source), n_ages - 1)
        frac = source - low
        low = low.astype(np.int64) + 1  # index into padded
        out = (1 - frac) * padded[rows, low] + frac * padded[rows, low + 1]
        total = out.sum(axis=1, keepdims=True)
        peak = np.eye(n_ages)[np.clip(np.rint(target[:, 0]), 0, n_ages - 1).astype(np.int64)]
        out = np.where(total > 1e-12, out / np.maximum(total, 1e-12), peak)  # all mass shifted off: the label
        error = target - (out * grid).sum(axis=1, keepdims=True)
        if np.abs(error).max() < 1e-4:
            break
        shift += error
    return out.astype(np.float32)


def teacher_targets(teacher: SoftTargets, ages: np.ndarray, *, temperature: float = 1.0,
                    target: str = "plain") -> tuple[np.ndarray, np.ndarray]:
    """The teacher's age distributions at ``temperature``, plain and mirrored, each ``recentred`` on ``ages``
    when ``target`` says so."""
    if target not in TEACHER_TARGETS:
        raise ValueError(f"unknown teacher target {target!r}; choose from {', '.join(TEACHER_TARGETS)}")
    out = [tempered(a, temperature) for a in (teacher.age, teacher.age_mirror)]
    return tuple(recentred(a, ages) if target == "recentred" else a for a in out)


def beta_weights(seed, n, alpha: float):
    """``n`` draws of Beta(alpha, alpha) from a stateless seed, as a ratio of two Gamma draws."""
    import tensorflow as tf

    g = tf.random.stateless_gamma([2, n], seed, alpha=alpha)
    return g[0] / tf.maximum(g[0] + g[1], 1e-12)


def mix(seed, x, targets: dict, weights: dict, alpha: float):
    """Mixup of a batch with a seeded permutation of itself.

    Images and age targets mix by Beta(alpha, alpha) weights ``lam``; the gender target mixes by
    ``lam`` times each face's gender sample weight (a face of unknown gender adds nothing) and its
    sample weight by ``lam``, so that the weighted loss is the same mix of the two faces' losses."""
    import tensorflow as tf

    n = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    partner = tf.argsort(tf.random.stateless_uniform([n], seeds[0]))
    lam = beta_weights(seeds[1], n, alpha)
    x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * tf.gather(x, partner)
    age = lam[:, None] * targets["age"] + (1 - lam[:, None]) * tf.gather(targets["age"], partner)
    w1, w2 = weights["gender"], tf.gather(weights["gender"], partner)
    g1, g2 = targets["gender"][:, 0], tf.gather(targets["gender"][:, 0], partner)
    share = lam * w1 + (1 - lam) * w2
    gender = tf.math.divide_no_nan(lam * w1 * g1 + (1 - lam) * w2 * g2, share)
    return x, {"age": age, "gender": gender[:, None]}, {"age": weights["age"], "gender": share}


def make_dataset(images: np.ndarray, ages: np.ndarray, genders: np.ndarray, *, batch_size: int = 64,
                 training: bool = False, augment: float = 1.0, seed: int = 0, input_size: int | None = None,
                 sigma: float = 2.0, max_age: int = 116, teacher: SoftTargets | None = None,
                 gender_weight: float = 0.0, temperature: float = 1.0, teacher_target: str = "plain",
                 label_age_column: bool = False, mixup: float = 0.0) -> tf.data.Dataset:
    """Batches of ``(x, targets, sample_weight)`` from uint8 RGB ``images`` (N, S, S, 3) and their labels.

    ``training`` shuffles (seeded, anew each epoch) and augments with strength
    ``augment`` (0 disables); ``input_size`` resizes the faces (bilinear).
    ``teacher`` (soft targets in the order of ``images``) appends its distributions
    at ``temperature`` to the age targets and mixes ``gender_weight`` of its
    P(female) into the gender targets; ``teacher_target`` "recentred" shifts its distributions
    onto the label ages. ``label_age_column`` appends the label age to the age targets; ``mixup``
    > 0 (training only) mixes faces and targets with Beta(mixup, mixup) weights. The last
    batch may be smaller.
    """
    import tensorflow as tf

    ages, genders = _check(images, ages, genders, max_age)
    size = int(input_size or images.shape[1])
    pixels = tf.constant(np.array(images, dtype=np.uint8))  # a copy: the source may be a read-only memmap
    label_age = gaussian_targets(ages, sigma, max_age)
    label_female = (genders == 1).astype(np.float32)
    if teacher is not None:
        if teacher.age.shape != label_age.shape:
            raise ValueError(f"soft targets {teacher.age.shape} do not match the labels {label_age.shape}")
        soft = teacher_targets(teacher, ages, temperature=temperature, target=teacher_target)
        views = [(np.concatenate([label_age, a], axis=1), (1 - gender_weight) * label_female + gender_weight * f)
                 for a, f in zip(soft, (teacher.female, teacher.female_mirror))]
    else:
        views = [(label_age, label_female)] * 2
    if label_age_column:
        views = [(np.concatenate([a, ages[:, None].astype(np.float32)], axis=1), f) for a, f in views]
    age_targets = [tf.constant(a) for a, _ in views]       # [plain, mirrored]
    gender_targets = [tf.constant(f.astype(np.float32)[:, None]) for _, f in views]
    gender_weights = tf.constant((genders >= 0).astype(np.float32))
    augmenting = training and augment > 0
    mixing = training and mixup > 0

    def load(idx, batch_seed=None):
        x = tf.cast(tf.gather(pixels, idx), tf.float32)
        mirrored = tf.zeros(tf.shape(idx), tf.bool)
        if augmenting:
            u = tf.random.stateless_uniform([tf.shape(idx)[0], 7], batch_seed, minval=-1.0, maxval=1.0)
            x, mirrored = _augment(x, u, augment, size), u[:, 0] < 0
        elif size != images.shape[1]:
            x = tf.clip_by_value(tf.image.resize(x, (size, size), method="bilinear"), 0.0, 255.0)
        x = x * PIXEL_SCALE + PIXEL_OFFSET

        def pick(pair):
            plain, mirror = tf.gather(pair[0], idx), tf.gather(pair[1], idx)
            return tf.where(mirrored[:, None], mirror, plain)

        targets = {"age": pick(age_targets), "gender": pick(gender_targets)}
        weights = {"age": tf.ones(tf.shape(idx), tf.float32), "gender": tf.gather(gender_weights, idx)}
        if mixing:  # a seed of its own: the augmentation's draws stay what they were without mixup
            return mix(batch_seed + tf.constant([0, 1], tf.int64), x, targets, weights, mixup)
        return x, targets, weights

    ds = tf.data.Dataset.range(len(ages))
    if training:
        ds = ds.shuffle(max(len(ages), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if augmenting or mixing:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)
    # deterministic even when training: batch contents are fixed by the seeds, and so is their order
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check(images: np.ndarray, ages: np.ndarray, genders: np.ndarray, max_age: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate the arrays; return ages and genders as int64."""
    ages, genders = np.asarray(ages, np.int64).ravel(), np.asarray(genders, np.int64).ravel()
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, S, S, 3), not {images.shape}")
    if not len(images) == len(ages) == len(genders):
        raise ValueError(f"{len(images)} images, {len(ages)} ages and {len(genders)} genders")
    if ages.size and (ages.min() < 0 or ages.max() > max_age):
        raise ValueError(f"ages must lie in 0..{max_age}")
    if not np.isin(genders, (-1, 0, 1)).all():
        raise ValueError("genders must be 0, 1 or -1 (unknown)")
    return ages, genders


def _augment(x: tf.Tensor, u: tf.Tensor, strength: float, size: int) -> tf.Tensor:
    """Warp, brighten and contrast a float 0..255 batch by uniforms ``u`` (B, 7) in [-1, 1]; out (B, size, size, 3)."""
    import tensorflow as tf

    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=_affine(u[:, :5], strength, x.shape[1], size), output_shape=[size, size],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    brightness = (u[:, 5] * MAX_BRIGHTNESS * strength * 255.0)[:, None, None, None]
    contrast = (1.0 + u[:, 6] * MAX_CONTRAST * strength)[:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((x - mean) * contrast + mean + brightness, 0.0, 255.0)


def _affine(u: tf.Tensor, strength: float, src: int, dst: int) -> tf.Tensor:
    """Rows ``[a0, a1, a2, b0, b1, b2, 0, 0]`` mapping output to input pixels, from uniforms in [-1, 1].

    Columns of ``u``: flip (when negative), rotation, shift x, shift y, scale.
    About the image centre, so that with no augmentation it is a half-pixel bilinear resize.
    """
    import tensorflow as tf

    flip = tf.where(u[:, 0] < 0, -1.0, 1.0)
    angle = u[:, 1] * np.deg2rad(MAX_ROTATION_DEG) * strength
    shift_x, shift_y = (u[:, 2] * MAX_SHIFT * strength * src, u[:, 3] * MAX_SHIFT * strength * src)
    zoom = (src / dst) / (1.0 + u[:, 4] * MAX_SCALE * strength)
    cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
    c_src, c_dst = (src - 1) / 2.0, (dst - 1) / 2.0
    a2 = c_src - (a0 + a1) * c_dst + shift_x
    b2 = c_src - (b0 + b1) * c_dst + shift_y
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
