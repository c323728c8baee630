"""Evaluation: numpy-only metrics (MAE, breakdowns, age confusion) and the scoring of a Keras or TFLite model on
labelled faces or on faces found in raw photos."""
