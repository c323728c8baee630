"""Losses and metrics of the age head, for label-distribution learning and plain regression.

The age targets of the ``ldl`` head are columns ``[label distribution | teacher distribution at T]
[| label age]``: the teacher's columns when distilling, the label age (a mix of ages under mixup)
when the loss has an expectation term. Their width tells which are present (see :func:`age_columns`).
"""
from __future__ import annotations

from converters.tf_setup import keras, tensorflow


def _ages(n: int):
    tf = tensorflow()
    return tf.range(n, dtype=tf.float32)


def target_age(y_true):
    """The expected age of a Gaussian target distribution."""
    tf = tensorflow()
    return tf.reduce_sum(y_true * _ages(y_true.shape[-1]), axis=-1)


def expected_age(logits):
    """The expected age of softmax(logits), in years."""
    tf = tensorflow()
    return tf.reduce_sum(tf.nn.softmax(logits) * _ages(logits.shape[-1]), axis=-1)


def age_columns(y_true, n: int):
    """``(label distribution, teacher distribution or None, label age)`` of age targets for ``n`` logits.

    Without a label-age column the label age is the mean of the label distribution (which a Gaussian cut
    at age 0 pulls up by under a year for infants)."""
    extra = y_true.shape[-1] - n
    if extra not in (0, 1, n, n + 1):
        raise ValueError(f"age targets of width {y_true.shape[-1]} do not fit {n} logits")
    label = y_true[:, :n]
    teacher = y_true[:, n:2 * n] if extra >= n else None
    age = y_true[:, -1] if extra in (1, n + 1) else target_age(label)
    return label, teacher, age


def kl_divergence(y_true, logits):
    """KL(target || softmax(logits)) per face."""
    tf = tensorflow()
    return tf.reduce_sum(y_true * (tf.math.log(y_true + 1e-8) - tf.nn.log_softmax(logits)), axis=-1)


def mae_years(y_true, logits):
    """|expected age of softmax(logits) - mean of the label distribution| (the first columns of ``y_true``)."""
    tf = tensorflow()
    n = logits.shape[-1]
    return tf.abs(expected_age(logits) - target_age(y_true[:, :n]))


def ldl_loss(teacher_weight: float = 0.0, temperature: float = 1.0, *, expectation_weight: float = 0.0):
    """Loss of the ``ldl`` head on targets laid out as in :func:`age_columns`.

    ``(1 - w) KL(label || softmax(z)) + w T² KL(teacher_T || softmax(z / T)) + e |E[softmax(z)] - age|``,
    the T² keeping the soft term's gradients on the scale of the hard one (Hinton et al.), the last term
    the expectation loss of DLDL-v2 (Gao et al. 2018). Targets without the teacher's columns (validation)
    give the label term alone; ``w = 0``, ``e = 0`` is plain KL.
    """
    def ldl_kl(y_true, logits):
        tf = tensorflow()
        label, teacher, age = age_columns(y_true, logits.shape[-1])
        loss = kl_divergence(label, logits)
        if teacher is not None:
            soft = kl_divergence(teacher, logits / temperature) * temperature ** 2
            loss = (1.0 - teacher_weight) * loss + teacher_weight * soft
        if expectation_weight:
            loss += expectation_weight * tf.abs(expected_age(logits) - age)
        return loss
    return ldl_kl


def regression_loss(y_true, pred):
    """Huber loss (delta 5 years) between a predicted age and the target's age."""
    return keras().losses.huber(target_age(y_true)[:, None], pred, delta=5.0)


def regression_mae_years(y_true, pred):
    tf = tensorflow()
    return tf.abs(pred[:, 0] - target_age(y_true))


def gender_accuracy():
    """The gender head's ``accuracy`` metric: prediction and target on the same side of 0.5. A distilled or mixed
    target (label, teacher and mixup blended) counts as the side it leans to; Keras' binary accuracy compares it
    with 0 or 1 exactly and reads about 0 on such targets."""
    tf = tensorflow()

    def same_side(y_true, p_female):
        return tf.reduce_mean(tf.cast(tf.equal(y_true >= 0.5, p_female >= 0.5), tf.float32), axis=-1)

    return keras().metrics.MeanMetricWrapper(same_side, name="accuracy")


def age_loss_and_metric(head: str):
    return (kl_divergence, mae_years) if head == "ldl" else (regression_loss, regression_mae_years)
