"""Latency of one inference (batch 1), timed around ``interpreter.invoke()`` only."""
from __future__ import annotations

import time

import numpy as np


def measure(interpreter, runs: int = 50, warmup: int = 5) -> np.ndarray:
    """Seconds per invoke for ``runs`` invokes after ``warmup`` untimed ones, on a random input."""
    detail = interpreter.get_input_details()[0]
    if detail["shape"][0] != 1:
        interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
    dtype = np.dtype(detail["dtype"])
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        data = rng.uniform(-1, 1, detail["shape"]).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, detail["shape"], endpoint=True).astype(dtype)
    interpreter.set_tensor(detail["index"], data)
    for _ in range(warmup):
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return times
