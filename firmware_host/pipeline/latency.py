"""Latency of one inference (batch 1), timed around ``interpreter.invoke()`` only."""
from __future__ import annotations

import time
from array import array

import numpy as np


def measure(interpreter, runs: int = 50, warmup: int = 5, *, invokes: int = 1, **timing) -> np.ndarray:
    """Seconds per face, ``invokes`` invokes each (2 for a model whose decoding averages the mirror image), for
    ``runs`` faces (or, with ``seconds``, as many as fit in that time) after ``warmup`` untimed ones, on a random
    input (see :func:`time_calls`)."""
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

    def face():
        for _ in range(invokes):
            interpreter.invoke()
    return time_calls(face if invokes > 1 else interpreter.invoke, runs, **timing)


def time_calls(call, runs: int, *, seconds: float | None = None, windows=None, after_first=None) -> np.ndarray:
    """Seconds per ``call()`` for ``runs`` calls, or with ``seconds`` as many as fit in that time.

    Each time also goes to ``windows`` (a ``Windows``), which is then finished; ``after_first()`` is
    called once, after the first timed call (before the samples take any memory).
    """
    times = array("d")  # compact: a 10-minute run can take millions of samples
    end = time.perf_counter() + seconds if seconds else None
    while (time.perf_counter() < end) if end else (len(times) < runs):
        start = time.perf_counter()
        call()
        stop = time.perf_counter()
        times.append(stop - start)
        if after_first is not None and len(times) == 1:
            after_first()
        if windows is not None:
            windows.add(stop - start, stop)
    if windows is not None:
        windows.finish()
    return np.frombuffer(times, dtype=np.float64) if times else np.zeros(0)
