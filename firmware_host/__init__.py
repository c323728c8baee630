"""On-device runtime of edge-age: LiteRT, numpy and OpenCV only, never TensorFlow."""
