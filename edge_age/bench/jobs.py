"""What a bench runs in a fresh process: one latency measurement, or one model's predictions.

A fresh (spawned) process per measurement makes its peak memory that model's alone. This module
imports only numpy at the top, so the child starts lean; the runtime loads inside each job.
"""
from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.pipeline.defaults import WINDOW_S
from firmware_host.pipeline.windows import Windows, latency_summary

MAX_SAMPLES = 10_000  # samples a --duration row keeps, spread evenly over the run (its statistics use all)

_DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tensorflow": "tensorflow",
                  "onnxruntime": "onnxruntime"}


def run_isolated(job, *args):
    """``job(*args)`` in a fresh process; its EdgeAgeError (or any error) comes back as an EdgeAgeError.

    Ctrl-C stops the parent, which ends the child: the child ignores SIGINT itself.
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, job, args), daemon=True)
    child.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        status, value = "died", None
    except BaseException:  # Ctrl-C: end the child before passing it on
        child.terminate()
        raise
    finally:
        child.join()
        receive.close()
    if status == "died":
        raise EdgeAgeError(f"the measuring process died (exit code {child.exitcode})")
    if status == "error":
        raise EdgeAgeError(value)
    return value


def _child(send, job, args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = ("ok", job(*args))
    except EdgeAgeError as exc:  # worded as the user reads it (a hint as a flag): it goes into bench.json
        result = ("error", exc.for_cli())
    except Exception as exc:  # noqa: BLE001 - reported to the parent as this measurement's failure
        result = ("error", f"{type(exc).__name__}: {exc}")
    send.send(result)
    send.close()


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where the OS does not say).

    On Linux this is VmHWM: ``ru_maxrss`` of a spawned child starts at its parent's resident size
    (the kernel carries the peak over fork and exec), which would charge the parent's memory to the model.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def runtime_of(module_name: str) -> dict:
    """The runtime package that a module belongs to, with its installed version."""
    top = module_name.split(".")[0]
    name = _DISTRIBUTIONS.get(top, top)
    try:
        return {"name": name, "version": version(name)}
    except PackageNotFoundError:
        return {"name": name, "version": None}


def latency_stats(seconds: np.ndarray) -> dict:
    """p50, p90, p99, mean, standard deviation, min and max, in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean()),
            "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0, "min": float(ms.min()), "max": float(ms.max())}


@dataclass(frozen=True)
class Timing:
    """How a latency job times: ``runs`` invokes, or with ``seconds`` as many as fit in that time, after
    ``warmup`` untimed ones, binned into windows of ``window_s`` counted from ``origin`` (the bench's start,
    ``time.time()``)."""

    runs: int
    warmup: int
    seconds: float | None = None
    window_s: float = WINDOW_S
    origin: float | None = None


def keep_samples(times: np.ndarray, at_most: int | None = None) -> list[float]:
    """The samples in ms: all of them, or at most ``at_most`` spread evenly over the run."""
    if at_most and len(times) > at_most:
        times = times[np.linspace(0, len(times) - 1, at_most).round().astype(int)]
    return [round(float(t) * 1000.0, 4) for t in times]


def latency_job(kind: str, model, delegate: dict, threads: int, timing: Timing) -> dict:
    """Latency of one face (batch 1; two inferences for a model that averages the mirror image) overall and per
    window, delegate coverage and peak memory of a fresh process.

    ``delegate`` holds ``make_interpreter``'s ``delegate``, ``library`` and ``device``. With ``timing.seconds``
    the peak memory is read after the first timed inference, before millions of samples add to it.
    """
    start_rss, first_rss = peak_rss_mb(), []
    windows = Windows(timing.window_s, latency_summary, time.time() - (timing.origin or time.time()))
    options = {"seconds": timing.seconds, "windows": windows, "after_first": lambda: first_rss.append(peak_rss_mb())}
    if kind == "onnx":
        from edge_age.bench import baselines
        times = baselines.measure(model, threads, timing.runs, timing.warmup, **options)
        size, cover, runtime = model.input_size, None, runtime_of("onnxruntime")
    else:
        from firmware_host.infer.interpreter import coverage, input_size, make_interpreter
        from firmware_host.infer.model_info import sidecar_decoding
        from firmware_host.pipeline.latency import measure
        interpreter = make_interpreter(Path(model), threads=threads, **delegate)
        cover = coverage(interpreter).to_dict()
        times = measure(interpreter, timing.runs, timing.warmup, invokes=sidecar_decoding(model).runs_per_face,
                        **options)
        size, runtime = input_size(interpreter), runtime_of(type(interpreter).__module__)
    peak = first_rss[0] if timing.seconds and first_rss else peak_rss_mb()
    return {"input_size": size, "runs": len(times), "latency_ms": latency_stats(times),
            "samples_ms": keep_samples(times, timing.seconds and MAX_SAMPLES),
            "windows": windows.closed, "start_rss_mb": start_rss, "peak_rss_mb": peak, "coverage": cover,
            "runtime": runtime}


def predict_job(kind: str, model, delegate: dict, threads: int, faces: np.ndarray):
    """(age, gender probability or None) of uint8 RGB faces."""
    if kind == "onnx":
        from edge_age.bench.baselines import predict
        return predict(model, faces, threads)
    from firmware_host.infer.predictor import predict_tflite
    # Delegates other than XNNPACK (Edge TPU, GPU) get the file's own static batch of 1.
    batch = 64 if delegate["delegate"] == "cpu" else 1
    return predict_tflite(Path(model), faces, threads=threads, batch=batch, **delegate)
