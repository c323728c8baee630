"""TensorFlow and tf_keras, imported on first use with the settings tfmot needs."""
from __future__ import annotations

import os


def keras():
    """The ``tf_keras`` module (Keras 2): tensorflow-model-optimization works only with it."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tf_keras
    except ImportError:
        from firmware_host.errors import EdgeAgeError
        raise EdgeAgeError("training and conversion need TensorFlow: pip install 'edge-age[train]'") from None
    return tf_keras


def tensorflow():
    keras()
    import tensorflow as tf
    return tf
