"""UTKFace-style face crops: names, folders and archives, the image cache, audit, split, the calibration manifest,
soft targets, the training input pipeline, and generated photos and videos."""
