"""Keras to TFLite conversion targets."""
