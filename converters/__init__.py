"""Conversion, Keras to TFLite: the target table (``targets``), the driver that builds, validates and promotes
files with their sidecars (``driver``), Edge TPU rules and compiler (``edgetpu``), per-layer quantization error
(``layer_error``), the int8-mixed search (``mixed``), the workbench (``workbench``) and TensorFlow's set-up
(``tf_setup``). It imports ``firmware_host`` and TensorFlow, and nothing of ``edge_age``."""
