"""Model outputs to predictions: age logits to an age and its spread, gender probability.

An age is read from the distribution as its mean or its median, then through the model's monotone correction
(:class:`AgeDecoding`, stored in its sidecar; none: the mean, as it is), from the outputs of the face alone or
averaged with those of its mirror image (``contract.mirror_averaged``). :func:`decode_age` is the one place that
reads ages, for the runtime, the evaluation, the converter's validation and the bench alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_host.errors import EdgeAgeError

METHODS = ("mean", "median")  # how an age is read from the distribution
SOFTMAX, VALUE = "softmax_expectation", "value"  # the age output's decodings a sidecar names


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def expected_age(logits: np.ndarray, first_age: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the age distribution given by logits over ages first_age..first_age+K-1."""
    p = softmax(logits)
    ages = np.arange(first_age, first_age + p.shape[-1], dtype=np.float64)
    mean = p @ ages
    std = np.sqrt(np.maximum(p @ ages**2 - mean**2, 0.0))
    return mean, std


def median_age(logits: np.ndarray, first_age: int = 0) -> np.ndarray:
    """Median of the age distribution of each row, each age's probability spread evenly over age ± 0.5 (so a
    distribution symmetric about an age has that age as its median, as its mean)."""
    p = softmax(logits)
    cdf = np.cumsum(p, axis=-1)
    k = np.minimum((cdf < 0.5).sum(axis=-1), p.shape[-1] - 1)  # the first age whose cumulative share reaches 1/2
    rows = np.arange(len(p))
    below = cdf[rows, k] - p[rows, k]
    return first_age + k - 0.5 + (0.5 - below) / np.maximum(p[rows, k], 1e-300)


@dataclass(frozen=True)
class AgeDecoding:
    """How ages are read from a model's age output: the ``method`` (mean or median of the distribution), then the
    monotone map through the knots ``x`` -> ``y`` (linear between them, slope 1 beyond the end knots; none: the
    identity); with ``mirror``, from the outputs of each face averaged with those of its mirror image (two runs of
    the model per face). Read from the ``age_decoding`` of a sidecar or a ``device.json``."""

    method: str = "mean"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    mirror: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> AgeDecoding:
        """From an ``age_decoding`` that passed the checks of ``model_info.check_age_decoding`` (None: identity)."""
        if not d:
            return cls()
        correction = d.get("correction") or {}
        return cls(d.get("method", "mean"), tuple(correction.get("x", ())), tuple(correction.get("y", ())),
                   bool(d.get("mirror", False)))

    def correct(self, ages: np.ndarray) -> np.ndarray:
        """``ages`` through the map."""
        if not self.x:
            return ages
        x, y = np.asarray(self.x, np.float64), np.asarray(self.y, np.float64)
        return np.where(ages < x[0], ages - x[0] + y[0],
                        np.where(ages > x[-1], ages - x[-1] + y[-1], np.interp(ages, x, y)))

    def describe(self) -> str:
        """``median, corrected (12 knots)``, ``mean``, ``mean, mirror-averaged``: for logs and reports."""
        text = f"{self.method}, corrected ({len(self.x)} knots)" if self.x else self.method
        return text + (", mirror-averaged" if self.mirror else "")

    @property
    def runs_per_face(self) -> int:
        """How many times the model runs for one face: 2 with ``mirror``."""
        return 2 if self.mirror else 1


IDENTITY = AgeDecoding()


def decode_age(output: np.ndarray, decode: str = SOFTMAX, ages: list[int] | None = None,
               decoding: AgeDecoding = IDENTITY) -> tuple[np.ndarray, np.ndarray]:
    """(age, std) per row of an age output: the mean or median of a softmax over ``ages`` ([first, last], default
    0..K-1), kept within them, or a plain value (std 0), through the correction of ``decoding``.

    The std is the spread of the distribution itself."""
    output = np.asarray(output)
    if decode == VALUE:
        if decoding.method != "mean":
            raise EdgeAgeError(f"a 'value' age output has no distribution to take the {decoding.method} of")
        return decoding.correct(output[:, 0].astype(np.float64)), np.zeros(len(output))
    if decode != SOFTMAX:
        raise EdgeAgeError(f"unknown age decoding {decode!r} in the model metadata")
    if decoding.method not in METHODS:
        raise EdgeAgeError(f"unknown age decoding method {decoding.method!r} (known: {', '.join(METHODS)})")
    first = ages[0] if ages else 0
    mean, std = expected_age(output, first)
    age = median_age(output, first) if decoding.method == "median" else mean
    return np.clip(decoding.correct(age), first, first + output.shape[-1] - 1), std
