"""The Python API: ``edge_age.load()`` gives the runtime's :class:`AgeEstimator` for a member of the family or a
``.tflite`` file. Runtime only: nothing here imports TensorFlow.

    import edge_age
    model = edge_age.load("s")
    faces = model.predict("photo.jpg")       # or a BGR numpy array; crops=True for ready-made face chips
    faces[0].age, faces[0].female, faces[0].box, faces[0].to_dict()
"""
from __future__ import annotations

import os
from pathlib import Path

from edge_age.members import resolve_tflite
from firmware_host.pipeline.estimator import AgeEstimator, EstimatorOptions


def load(model: str | os.PathLike | None = None, *, detector: str | None = "auto", threads: int = 1,
         detector_model: str | os.PathLike | None = None, detect_size: int = 0, min_face: int = 0,
         delegate: str = "cpu", delegate_library: str | None = None, device: str | None = None) -> AgeEstimator:
    """An estimator of ``model``: a member's name (``m``, ``s``, ``n``: its int8-qat file; None: ``s``) or a
    ``.tflite`` path with its ``.json`` sidecar beside it. ``detector`` is auto (YuNet, bundled), yunet, blazeface
    or haar; None loads none, for ``predict(..., crops=True)`` only."""
    return AgeEstimator.create_from_options(EstimatorOptions(
        resolve_tflite(model), detector=detector, detector_model=Path(detector_model) if detector_model else None,
        detect_size=detect_size, min_face=min_face, threads=threads, delegate=delegate,
        delegate_library=delegate_library, device=device))
