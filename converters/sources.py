"""The Keras models of a conversion run, each exported once as a slim SavedModel that every target converts from.

``TFLiteConverter.from_keras_model`` saves the whole Keras object graph (every layer's traced functions) and
loads it back for each file it makes: about 50 s of a QAT model's 53 s here, paid again for every target and
reference file. The export here holds only the model's variables and one inference function (``training=False``),
takes a few seconds, and ``TFLiteConverter.from_saved_model`` reads it back in seconds; the files it gives run
the same numbers (checked against ``from_keras_model`` on the reference model: identical outputs).
"""
from __future__ import annotations

import logging
from pathlib import Path

from converters.tf_setup import tensorflow
from firmware_host.errors import EdgeAgeError
from firmware_host.quiet import native_quiet

log = logging.getLogger(__name__)


def export_saved_model(model, directory: Path) -> Path:
    """``model`` in inference mode as a SavedModel of its variables and one ``serving_default`` signature whose
    outputs keep the model's output names (``age``, ``gender``); ``directory`` is returned."""
    tf = tensorflow()
    if len(model.inputs) != 1:
        raise EdgeAgeError(f"cannot convert a model with {len(model.inputs)} inputs: an edge-age model takes one image")
    (image,) = model.inputs
    spec = tf.TensorSpec(image.shape, image.dtype, name=image.name.split(":")[0])

    def serve(x):
        out = model(x, training=False)
        return out if isinstance(out, dict) else dict(zip(model.output_names, tf.nest.flatten(out)))

    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the SavedModel holds the weights the function reads
    module.serve = tf.function(serve, input_signature=[spec])
    with native_quiet():
        tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    log.debug("exported %s to %s", model.name, directory)
    return directory


class Sources:
    """The run's Keras models by source name ("float", "qat"), each exported into ``directory`` when first asked."""

    def __init__(self, models: dict, directory: Path):
        self.models, self.directory = models, directory
        self._paths: dict[str, Path] = {}

    def __getitem__(self, source: str) -> Path:
        if source not in self._paths:
            self._paths[source] = export_saved_model(self.models[source], self.directory / f"source_{source}")
        return self._paths[source]
