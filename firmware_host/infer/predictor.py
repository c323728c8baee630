"""Age and gender from face chips with a converted model, decoded as its metadata says."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_host.infer.contract import ages_from_output, mirror_averaged, pick_outputs
from firmware_host.infer.interpreter import coverage, invoke, make_interpreter
from firmware_host.infer.model_info import ModelInfo, check_model, read_info, sidecar_decoding, signature_runner
from firmware_host.infer.postprocess import AgeDecoding, decode_age
from firmware_host.progress import track


@dataclass
class Prediction:
    """One face: age (as the sidecar decodes it), spread of the age distribution (years), probability of female."""

    age: float
    age_std: float
    female: float


class AgeGenderModel:
    """A ``.tflite`` age/gender model and its sidecar, on one delegate."""

    def __init__(self, model: str | os.PathLike, delegate: str = "cpu", threads: int = 1,
                 library: str | None = None, device: str | None = None):
        self.path = Path(model)
        self.info: ModelInfo = read_info(self.path)
        self.decoding: AgeDecoding = self.info.decoding  # read once, not per frame
        self.interpreter = make_interpreter(self.path, threads, delegate, library, device)
        check_model(self.info, self.interpreter, self.path)
        self.delegate, self.threads = delegate, threads
        self.size = self.info.input_size
        self.resolution = self.info.extra.get("chip_resolution")

    def coverage(self) -> dict:
        return coverage(self.interpreter).to_dict()

    def predict(self, chips: np.ndarray) -> list[Prediction]:
        """Predictions for uint8 RGB chips (N, S, S, 3), in one invoke."""
        return self.decode(self.infer(chips)) if len(chips) else []

    def infer(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        """The model's raw outputs (dequantized) for a batch of chips; averaged with the mirror images' when the
        sidecar's decoding says so."""
        return mirror_averaged(lambda x: invoke(self.interpreter, x, self.info.pixel_scale, self.info.pixel_offset),
                               chips, self.decoding.mirror)

    def decode(self, outputs: dict[str, np.ndarray]) -> list[Prediction]:
        """Outputs to ages, spreads and gender probabilities, as the sidecar says."""
        age_out, gender_out = self.info.outputs["age"], self.info.outputs["gender"]
        age, std = decode_age(outputs[age_out.name], age_out.decode, age_out.ages, self.decoding)
        female = outputs[gender_out.name][:, 0].astype(np.float64)
        if gender_out.positive == "male":
            female = 1 - female
        return [Prediction(float(a), float(s), float(g)) for a, s, g in zip(age, std, female)]


def predict_tflite(path: Path, images: np.ndarray, threads: int = 2, batch: int = 64, *,
                   decoding: AgeDecoding | None = None, **options) -> tuple[np.ndarray, np.ndarray]:
    """(age, gender probability) from a ``.tflite`` file through LiteRT (``options``: see :func:`tflite_outputs`),
    read as ``decoding`` says (default: as the sidecar beside ``path`` says; the mean without one)."""
    decoding = sidecar_decoding(path) if decoding is None else decoding
    age, gender = tflite_outputs(path, images, threads, batch, mirror=decoding.mirror, **options)
    return ages_from_output(age, decoding), gender


def tflite_outputs(path: Path, images: np.ndarray, threads: int = 2, batch: int = 64, *, delegate: str = "cpu",
                   library: str | None = None, device: str | None = None, mirror: bool = False,
                   progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(raw age output, gender probability) from a ``.tflite`` file through LiteRT on ``delegate``, with ``mirror``
    averaged with the mirror images' (``contract.mirror_averaged``); ``progress`` names a progress bar over the
    batches (for slow files)."""
    interpreter = make_interpreter(path, threads=threads, delegate=delegate, library=library, device=device)
    signature_runner(interpreter, path)  # another task's model: one line, not a LiteRT traceback
    ages, genders = [], []
    starts = range(0, len(images), batch)
    for start in (track(starts, progress, total=len(starts)) if progress else starts):
        age, gender = pick_outputs(mirror_averaged(lambda x: invoke(interpreter, x),
                                                   np.asarray(images[start:start + batch]), mirror))
        ages.append(age)
        genders.append(gender)
    return np.concatenate(ages), np.concatenate(genders)
