"""TensorFlow and tf_keras, imported on first use with the settings tfmot needs; their own log lines (absl,
oneDNN, CUDA) are hidden unless ``edge-age --verbose``."""
from __future__ import annotations

import logging
import os

from firmware_host.quiet import native_quiet, verbose

_ready = False


def keras():
    """The ``tf_keras`` module (Keras 2): tensorflow-model-optimization works only with it."""
    global _ready
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with native_quiet():  # the lines printed before absl starts, and cuInit's
            import tf_keras
            if not _ready:
                import tensorflow as tf
                tf.config.list_physical_devices("GPU")  # cuInit's line now; logical devices stay configurable
    except ImportError:
        from firmware_host.errors import EdgeAgeError
        raise EdgeAgeError("training and conversion need TensorFlow: pip install 'edge-age[train]'") from None
    if not _ready and not verbose():
        logging.getLogger("absl").setLevel(logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    _ready = True
    return tf_keras


def tensorflow():
    keras()
    import tensorflow as tf
    return tf
