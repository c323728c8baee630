"""Model outputs to predictions: age logits to expected age and spread, gender probability."""
from __future__ import annotations

import numpy as np


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
