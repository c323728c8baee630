"""``edge-age bench``: accuracy, latency, memory and delegate coverage of model files on this device.

Each (model, delegate, threads) is timed in a fresh process (``bench_jobs``), so its peak memory is
its own; accuracy does not depend on the thread count and is computed once per (model, delegate).
``bench.json`` is rewritten after every measurement, so an interrupted or killed bench keeps what it
measured. Nothing here imports TensorFlow: the same command runs on a Raspberry Pi or a Coral board.
"""
from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_age import __version__
from edge_age.bench.baselines import Baseline, read_baseline
from edge_age.bench.jobs import Timing, latency_job, latency_stats, predict_job, run_isolated
from edge_age.report.bench_page import SCHEMA, SCHEMA_VERSION, measurements, write_bench, write_bench_json
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.paths import file_sha256
from firmware_host.infer import system_info
from firmware_host.infer.interpreter import EDGETPU_OP, load_delegate, make_interpreter
from firmware_host.infer.model_info import check_model, read_info, sidecar_path
from firmware_host.progress import progress_bar

TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of every .tflite file
MODEL_HELP = "bench takes .tflite files, ONNX baselines (.onnx with its preprocessing .json), or folders of them"


@dataclass(frozen=True)
class BenchModel:
    """A model file to bench: a ``.tflite`` file, or an ONNX baseline with its preprocessing."""

    name: str
    path: Path
    kind: str  # "tflite" or "onnx"
    target: str | None = None  # the conversion target, from the .tflite's sidecar
    input_size: int | None = None  # from the sidecar or the baseline spec; else known once measured
    baseline: Baseline | None = None

    @property
    def job_model(self):
        """What the measuring process receives: the file's path, or the baseline."""
        return self.baseline if self.baseline else str(self.path)

    def skip_reason(self, delegate: str) -> str | None:
        """Why this model cannot run on ``delegate`` at all, or None."""
        if self.kind == "onnx":
            return None if delegate == "cpu" else "ONNX baselines run on the CPU (onnxruntime)"
        compiled = EDGETPU_OP in self.path.read_bytes()
        if compiled and delegate != "edgetpu":
            return "compiled for the Edge TPU: runs only with --delegate edgetpu"
        if delegate == "edgetpu" and not compiled:
            return "not compiled for the Edge TPU (run edgetpu_compiler on it)"
        return None

    def entry(self) -> dict:
        """The model's record in bench.json (input size and accuracy are filled in as measured)."""
        return {"name": self.name, "file": str(self.path), "kind": self.kind, "target": self.target,
                "size_bytes": self.path.stat().st_size, "sha256": file_sha256(self.path),
                "input_size": self.input_size, "accuracy": {},
                "baseline": self.baseline.to_dict() if self.baseline else None}


def _model(path: Path) -> BenchModel:
    if path.suffix == ".tflite":
        with open(path, "rb") as f:
            if f.read(8)[4:] != TFLITE_IDENTIFIER:
                raise EdgeAgeError(f"{path} is not a TFLite model (no TFL3 file identifier)")
        info = read_info(path) if sidecar_path(path).is_file() else None
        if info and EDGETPU_OP not in path.read_bytes():  # a compiled file loads only on the Edge TPU
            check_model(info, make_interpreter(path), path)
        return BenchModel(path.stem, path, "tflite", info and info.target, info and info.input_size)
    if path.suffix in (".onnx", ".json"):
        baseline = read_baseline(path)
        return BenchModel(baseline.model.stem, baseline.model, "onnx", input_size=baseline.input_size,
                          baseline=baseline)
    raise EdgeAgeError(f"{path} is not a model: {MODEL_HELP}")


def find_models(paths: list[Path]) -> list[BenchModel]:
    """The models named by ``paths`` (files, or folders: their .tflite and .onnx files), checked, named uniquely."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".tflite", ".onnx"))
            if not found:
                raise EdgeAgeError(f"folder {path} holds no .tflite or .onnx file: {MODEL_HELP}")
            files += found
        elif not path.is_file():
            raise EdgeAgeError(f"model file {path} does not exist")
        else:
            files.append(path)
    models = [_model(p) for p in dict.fromkeys(p.resolve() for p in files)]
    names, depth = [m.name for m in models], 0
    while len(set(names)) < len(names):  # clashing names take as many parent folders as tell them apart
        depth += 1
        clash = {n for n in names if names.count(n) > 1}
        names = ["/".join((*m.path.parent.parts[-depth:], m.name)) if n in clash else n for m, n in zip(models, names)]
    return [replace(m, name=n) for m, n in zip(models, names)]


@dataclass
class FaceSource:
    """Where the labelled faces for accuracy come from; loaded once per input size."""

    data: Path | None
    _: KW_ONLY
    split: Path | None = None
    subset: str = "test"
    labels: Path | None = None
    limit: int | None = None
    skip_bad_labels: bool = False
    _by_size: dict = field(default_factory=dict, repr=False)

    def load(self, size: int):
        """The faces at ``size`` pixels; with ``limit``, that many spread evenly over them."""
        from edge_age.eval.evaluation import labelled_faces
        if size not in self._by_size:
            faces = labelled_faces(self.data, size, self.split, self.subset, labels=self.labels,
                                   skip_bad_labels=self.skip_bad_labels)
            if self.limit and self.limit < len(faces.files):
                faces = faces.subset(np.unique(np.linspace(0, len(faces.files) - 1, self.limit).round().astype(int)))
            self._by_size[size] = faces
        return self._by_size[size]

    def describe(self) -> str:
        source = (f"the {self.subset} side of {self.split}" if self.split else f"the faces listed in {self.labels}"
                  if self.labels else "every labelled face")
        return f"{source} of {self.data or '$EDGE_AGE_DATA'}" + (f", at most {self.limit}" if self.limit else "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_bench(models: list[BenchModel], delegates: list[str], threads: list[int], timing: Timing,
              *, faces: FaceSource | None, name: str | None) -> dict:
    """The bench record before any measurement: schema, device, settings and models."""
    device = system_info.describe()
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "status": "running", "error": None,
            "started": _now(), "finished": None, "seconds": None, "toolkit_version": __version__,
            "device": {"name": name or device.get("board") or device.get("hostname") or "this device", **device,
                       "thermal_before": system_info.thermal_state(), "thermal_after": None},
            "settings": {"delegates": delegates, "threads": threads, "runs": timing.runs, "warmup": timing.warmup,
                         "duration_s": timing.seconds, "window_s": timing.window_s, "batch": 1,
                         "faces": faces.describe() if faces else None, "faces_count": None},
            "models": [m.entry() for m in models], "latency": [], "skipped": [], "thermal": [], "pareto_front": []}


def _reasons(bench: dict) -> str:
    return "; ".join(f"{s['model']} on {s['delegate']}: {s['reason']}" for s in bench["skipped"])


def _finish(bench: dict, status: str, out: Path, start: float, *, thermal: system_info.ThermalLog,
            error: str | None = None) -> None:
    bench.update(status=status, error=error, finished=_now(), seconds=round(time.perf_counter() - start, 1),
                 thermal=thermal.stop())
    bench["device"]["thermal_after"] = system_info.thermal_state()
    bench["pareto_front"] = [{"model": m.row["model"], "delegate": m.row["delegate"], "threads": m.row["threads"]}
                             for m in measurements(bench) if m.front]
    write_bench(bench, out)


class BenchLoop:
    """The measurement loop over (model, delegate) groups and thread counts, writing bench.json as it goes."""

    def __init__(self, bench: dict, out: Path, threads: list[int], timing: Timing, faces: FaceSource | None, *,
                 thermal: system_info.ThermalLog, library: str | None = None, device: str | None = None):
        self.bench, self.out, self.threads, self.timing, self.faces = bench, out, threads, timing, faces
        self.thermal, self.library, self.device = thermal, library, device
        self.entries = {m["name"]: m for m in bench["models"]}

    def write(self) -> None:
        """bench.json as measured so far, with the temperature and clock samples taken so far."""
        self.bench["thermal"] = list(self.thermal.samples)
        write_bench_json(self.bench, self.out)

    def options(self, delegate: str) -> dict:
        return {"delegate": delegate, "library": self.library, "device": self.device}

    def skip(self, model: BenchModel, delegate: str, reason: str) -> None:
        self.bench["skipped"].append({"model": model.name, "delegate": delegate, "reason": reason})
        self.write()

    def steps(self, groups: int) -> int:
        return groups * (len(self.threads) + (1 if self.faces else 0))

    def latency(self, model: BenchModel, delegate: str, threads: int) -> None:
        """One round of a configuration; a later round adds its samples to the first's (each in a fresh process)."""
        result = run_isolated(latency_job, model.kind, model.job_model, self.options(delegate), threads, self.timing)
        self.entries[model.name]["input_size"] = result.pop("input_size")
        earlier = next((e for e in self.bench["latency"]
                        if (e["model"], e["delegate"], e["threads"]) == (model.name, delegate, threads)), None)
        if earlier is None:
            self.bench["latency"].append({"model": model.name, "delegate": delegate, "threads": threads,
                                          "warmup": self.timing.warmup, **result,
                                          "temperature_c": system_info.temperature_c()})
        else:  # rounds exist only without --duration: every sample is kept, and the statistics pool them
            samples = earlier["samples_ms"] + result["samples_ms"]
            earlier.update(runs=len(samples), samples_ms=samples, latency_ms=latency_stats(np.array(samples) / 1000.0),
                           windows=earlier["windows"] + result["windows"],
                           peak_rss_mb=max(filter(None, (earlier["peak_rss_mb"], result["peak_rss_mb"])), default=None))
        self.write()

    def accuracy(self, model: BenchModel, delegate: str) -> None:
        from edge_age.eval.evaluation import score
        from edge_age.eval.metrics import error_by_age
        entry = self.entries[model.name]
        faces = self.faces.load(entry["input_size"])
        try:
            age, gender = run_isolated(predict_job, model.kind, model.job_model, self.options(delegate),
                                       max(self.threads), faces.images)
        except EdgeAgeError as exc:
            self.skip(model, delegate, f"accuracy: {exc.for_cli()}")
            return
        entry["accuracy"][delegate] = {**score(age, gender, faces), "error_by_age": error_by_age(age, faces.ages)}
        self.bench["settings"].update(faces_count=len(faces.files), faces_skipped=faces.skipped())
        self.write()

    def group(self, model: BenchModel, delegate: str, bar, task, first: bool = True) -> None:
        """Latency at each thread count, accuracy after the first in the first round (so a bad data set
        shows up early).

        A failure of the model on this delegate (a runtime that cannot load an op, a delegate that
        refuses the graph) is recorded and the bench goes on; a bad data set stops it.
        """
        left = self.steps(1) if first else len(self.threads)
        for i, threads in enumerate(self.threads):
            bar.update(task, description=f"{model.name} on {delegate} ×{threads}")
            try:
                self.latency(model, delegate, threads)
            except EdgeAgeError as exc:
                self.skip(model, delegate, exc.for_cli())
                bar.advance(task, left)
                return
            bar.advance(task)
            left -= 1
            if i == 0 and first and self.faces:
                bar.update(task, description=f"{model.name} on {delegate}: accuracy")
                self.accuracy(model, delegate)
                bar.advance(task)
                left -= 1


def run_bench(paths: list[Path], out: Path, delegates: list[str], threads: list[int], *,
              timing: Timing = Timing(100, 10),
              faces: FaceSource | None = None, name: str | None = None, library: str | None = None,
              device: str | None = None, rounds: int = 1) -> dict:
    """Bench every model on every delegate at every thread count; write bench.json, bench.md, bench.html.

    With ``rounds`` > 1 every configuration is measured once per round, the rounds interleaved, and
    the samples pooled: a slow spell of the machine then spreads over all models instead of one.
    With ``timing.seconds`` each configuration runs that long, once; its latency is summarised per window
    of ``timing.window_s``, and the temperature and CPU clock are sampled as often, where the OS exposes them.
    """
    if timing.seconds and rounds > 1:
        raise EdgeAgeError("{} runs each configuration once, for that long: leave out {}",
                           option=("--duration", "--rounds"), parameter=("timing.seconds", "rounds"))
    start = time.perf_counter()
    out = atomic.writable_dir(out)
    models = find_models(paths)
    for delegate in dict.fromkeys(delegates):
        # a missing delegate library or device stops the bench before it starts
        load_delegate(delegate, library, device)
    for size in dict.fromkeys(m.input_size for m in models if faces and m.input_size):
        faces.load(size)  # and so does a bad data set or split
    bench = new_bench(models, delegates, threads, timing, faces=faces, name=name)
    bench["settings"]["rounds"] = rounds
    groups = []
    for model in models:
        for delegate in delegates:
            reason = model.skip_reason(delegate)
            if reason:
                bench["skipped"].append({"model": model.name, "delegate": delegate, "reason": reason})
            else:
                groups.append((model, delegate))
    if not groups:
        raise EdgeAgeError(f"nothing to measure: {_reasons(bench)}")
    write_bench(bench, out)  # the pages of an earlier bench never sit beside this one's bench.json
    thermal = system_info.ThermalLog(timing.window_s)
    loop = BenchLoop(bench, out, threads, replace(timing, origin=time.time()), faces, thermal=thermal, library=library,
                     device=device)
    try:
        with progress_bar() as bar:
            task = bar.add_task("bench", total=loop.steps(len(groups)) + (rounds - 1) * len(groups) * len(threads))
            for r in range(rounds):
                for model, delegate in groups:
                    loop.group(model, delegate, bar, task, first=r == 0)
    except KeyboardInterrupt:
        _finish(bench, "interrupted", out, start, thermal=thermal)
        raise
    except EdgeAgeError as exc:
        _finish(bench, "failed", out, start, thermal=thermal, error=exc.for_cli())
        raise
    if not bench["latency"]:
        _finish(bench, "failed", out, start, thermal=thermal, error="no model could be measured")
        raise EdgeAgeError(f"no model could be measured: {_reasons(bench)}")
    _finish(bench, "complete", out, start, thermal=thermal)
    return bench
