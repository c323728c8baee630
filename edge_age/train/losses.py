"""Losses and metrics of the age head, for label-distribution learning and plain regression."""
from __future__ import annotations

from converters.tf_setup import keras, tensorflow

tf = tensorflow()


def _ages(n: int):
    return tf.range(n, dtype=tf.float32)


def target_age(y_true):
    """The expected age of a Gaussian target distribution."""
    return tf.reduce_sum(y_true * _ages(y_true.shape[-1]), axis=-1)


def kl_divergence(y_true, logits):
    """KL(target || softmax(logits)) per face."""
    return tf.reduce_sum(y_true * (tf.math.log(y_true + 1e-8) - tf.nn.log_softmax(logits)), axis=-1)


def mae_years(y_true, logits):
    """|expected age of softmax(logits) - label age|, in years (the label: the first columns of ``y_true``)."""
    n = logits.shape[-1]
    return tf.abs(tf.reduce_sum(tf.nn.softmax(logits) * _ages(n), axis=-1) - target_age(y_true[:, :n]))


def distillation_loss(teacher_weight: float, temperature: float):
    """Loss of targets ``[label distribution | teacher distribution at T]`` (twice the logits' columns).

    ``(1 - w) KL(label || softmax(z)) + w T² KL(teacher_T || softmax(z / T))``, the
    T² keeping the soft term's gradients on the scale of the hard one (Hinton et al.).
    Targets without the teacher's columns (validation) give the label term alone.
    """
    def distill_kl(y_true, logits):
        n = logits.shape[-1]
        hard = kl_divergence(y_true[:, :n], logits)
        if y_true.shape[-1] == n:
            return hard
        soft = kl_divergence(y_true[:, n:], logits / temperature) * temperature ** 2
        return (1.0 - teacher_weight) * hard + teacher_weight * soft
    return distill_kl


def regression_loss(y_true, pred):
    """Huber loss (delta 5 years) between a predicted age and the target's age."""
    return keras().losses.huber(target_age(y_true)[:, None], pred, delta=5.0)


def regression_mae_years(y_true, pred):
    return tf.abs(pred[:, 0] - target_age(y_true))


def age_loss_and_metric(head: str):
    return (kl_divergence, mae_years) if head == "ldl" else (regression_loss, regression_mae_years)
