"""The optimizer of a training phase (Adam, or AdamW with weight decay) and the moving average of its weights.

With ``ema`` the optimizer keeps an exponential moving average of the trainable weights (tf_keras'
``use_ema``), its decay warmed up as ``min(ema, (1 + t) / (10 + t))`` at step ``t`` so that the
average soon forgets the initial weights. The model trains on its raw weights; validation and the
saved checkpoints see the average (:func:`averaged_weights`, :func:`AveragedValidation`), and at the
end of ``fit`` tf_keras itself writes the average into the model (``finalize_variable_values``).
Moving statistics of batch normalisation are not trainable weights: they stay those of the raw model.
"""
from __future__ import annotations

from contextlib import contextmanager

from converters.tf_setup import keras, tensorflow

NO_DECAY = ("bias", "gamma", "beta")  # variable names AdamW leaves alone: biases and batch-norm scales/offsets


def make_optimizer(lr, *, weight_decay: float = 0.0, ema: float = 0.0):
    """Adam (``weight_decay`` 0) or AdamW, averaging its weights when ``ema`` (the decay, e.g. 0.999) is set."""
    k = keras()
    base = k.optimizers.AdamW if weight_decay else k.optimizers.Adam
    options = dict(weight_decay=weight_decay) if weight_decay else {}
    if ema:
        optimizer = _warm_ema(base)(lr, use_ema=True, ema_momentum=ema, **options)
    else:
        optimizer = base(lr, **options)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer


def _warm_ema(base):
    """``base`` whose moving average uses the warmed-up decay."""
    tf = tensorflow()

    class WarmEma(base):
        def _update_model_variables_moving_average(self, var_list):
            decay, step = self.ema_momentum, tf.cast(self.iterations, tf.float32)
            self.ema_momentum = tf.minimum(decay, (1.0 + step) / (10.0 + step))
            try:
                super()._update_model_variables_moving_average(var_list)
            finally:
                self.ema_momentum = decay

    WarmEma.__name__ = base.__name__
    return WarmEma


def uses_ema(model) -> bool:
    return bool(getattr(getattr(model, "optimizer", None), "use_ema", False))


@contextmanager
def averaged_weights(model):
    """Inside: the model holds its optimizer's moving average of the trainable weights; after: its raw weights
    again. Nothing changes for an optimizer without one."""
    if not uses_ema(model) or not getattr(model.optimizer, "_built", False):
        yield model
        return
    variables = model.trainable_variables
    raw = [v.numpy() for v in variables]
    model.optimizer.finalize_variable_values(variables)
    try:
        yield model
    finally:
        for v, value in zip(variables, raw):
            v.assign(value)


class AveragedValidation:
    """Keras callback factory: ``fit``'s validation at the end of each epoch scores the averaged weights."""

    def __new__(cls):
        k = keras()

        class _Averaged(k.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self._swap = None

            def on_test_begin(self, logs=None):
                self._swap = averaged_weights(self.model)
                self._swap.__enter__()

            def on_test_end(self, logs=None):
                if self._swap is not None:
                    self._swap.__exit__(None, None, None)
                    self._swap = None

        return _Averaged()
