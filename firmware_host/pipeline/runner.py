"""``edge-age run``: capture, detect, align, predict, track, draw, and write what happened.

The capture thread feeds a bounded queue (old frames dropped for live sources); the main loop
times every stage; ``run_report.json`` is written when the run ends, by the end of the input,
Ctrl-C, SIGTERM (systemd) or an error.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from firmware_host.capture.sources import ImageSource, LatestFrames, open_source
from firmware_host.detect.reduced import check_size
from firmware_host.detect.tracking import IouTracker
from firmware_host.errors import EdgeAgeError, user_message
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json
from firmware_host.infer import system_info
from firmware_host.logs import STATUS
from firmware_host.pipeline.defaults import DETECT_EVERY, DETECT_SIZE, WINDOW_S, WINDOWS_KEPT
from firmware_host.pipeline.estimator import AgeEstimator, EstimatorOptions
from firmware_host.pipeline.finder import FaceFinder, check_every
from firmware_host.pipeline.stages import Durations, StageTimer, summarize
from firmware_host.pipeline.windows import Windows, check_seconds, drift, frame_summary
from firmware_host.sinks.outputs import FrameOutputs

REPORT_FORMAT = 1
log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Everything one run of the device pipeline needs: the model and source, then keywords only."""

    model: Path
    source: str
    _: KW_ONLY
    out: Path = Path("runs/run")
    delegate: str = "cpu"
    threads: int = 2
    delegate_library: str | None = None
    device: str | None = None
    detector: str = "auto"
    detector_model: Path | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video: Path | None = None
    jsonl: Path | None = None
    serve: str | None = None
    show: bool = False
    max_frames: int | None = None
    min_face: int = 24
    smoothing: float = 0.3
    queue: int = 2
    detect_size: int = DETECT_SIZE
    detect_every: int = DETECT_EVERY
    duration: float | None = None
    window_s: float = WINDOW_S
    overlap: bool = False
    loop: bool = False
    max_fps: float | None = None


def _record(frame, tracks, results, times: dict) -> dict:
    return {"frame": frame.index, "time": round(frame.time, 4), **({"file": frame.name} if frame.name else {}),
            "faces": [{"track": t.id, "box": [round(v, 1) for v in r.face.box], "score": round(r.face.score, 3),
                       "age": round(r.prediction.age, 2), "age_std": round(r.prediction.age_std, 2),
                       "female": round(r.prediction.female, 4), "track_age": round(t.age, 2),
                       "track_female": round(t.female, 4), "gender": "F" if t.female >= 0.5 else "M"}
                      for t, r in zip(tracks, results)],
            "ms": times}


class Stopped(BaseException):
    """SIGTERM (``systemctl stop``): a clean stop, reported and exited with status 0."""


def _sigterm(signum, frame):
    raise Stopped


class Run:
    """One run: opened resources, the loop, and the report."""

    def __init__(self, options: RunOptions):
        self.o = options
        check_size(options.detect_size)
        check_every(options.detect_every)
        check_seconds(options.duration, "--duration")
        check_seconds(options.window_s, "--window")
        if options.max_fps is not None and options.max_fps <= 0:
            raise EdgeAgeError(f"{{}} must be more than 0, not {options.max_fps:g}", option="--max-fps",
                                   parameter="max_fps")
        if options.show:
            from firmware_host.sinks.writers import display_available
            if not display_available():
                raise EdgeAgeError("{} needs a display (none here): use {} instead",
                                   option=("--show", "--serve HOST:PORT"), parameter=("show", "serve='HOST:PORT'"))
        self.out = atomic.writable_dir(options.out)
        self.estimator = AgeEstimator.create_from_options(EstimatorOptions(
            options.model, detector=options.detector, detector_model=options.detector_model,
            detect_size=options.detect_size, min_face=options.min_face, threads=options.threads,
            delegate=options.delegate, delegate_library=options.delegate_library, device=options.device))
        self.model, self.detector = self.estimator.model, self.estimator.detector
        log.info("edge-age: %s", self.estimator.describe(), extra=STATUS)
        self.finder = FaceFinder(self.detector, options.detect_every, options.min_face)
        self.source = open_source(options.source, options.width, options.height, options.fps, loop=options.loop)
        self.sinks, self.images = [], []
        try:
            self._open_sinks(options)
        except BaseException:
            self.close(ok=False)
            raise
        self.timer, self.tracker = StageTimer(), IouTracker(alpha=options.smoothing)
        self.frames = self.faces = 0
        self.reader: LatestFrames | None = None
        self.frame_seconds, self.first_interval = Durations(), None  # the first interval includes start-up
        self.outputs = FrameOutputs(self.images, options.overlap)
        self.windows = Windows(options.window_s, frame_summary, keep=WINDOWS_KEPT)

    def _open_sinks(self, options: RunOptions) -> None:
        if options.jsonl:
            from firmware_host.sinks.writers import JsonlSink
            self.sinks.append(JsonlSink(options.jsonl))
        if options.video:
            from firmware_host.sinks.writers import VideoSink
            self.images.append(VideoSink(options.video, options.fps or self.source.fps or 15.0))
        if options.serve:
            from firmware_host.sinks.mjpeg import MjpegServer
            server = MjpegServer(options.serve)
            self.images.append(server)
            log.info("edge-age: watching on %s", server.url, extra=STATUS)
        if options.show:
            from firmware_host.sinks.writers import WindowSink
            self.images.append(WindowSink())

    def loop(self) -> None:
        self.reader = reader = LatestFrames(self.source, self.o.queue)
        last = start = time.perf_counter()
        fps = 0.0
        try:
            for frame in reader:
                began = time.perf_counter()
                self.timer.add("capture", frame.grab_s)
                faces = self.finder.find(frame.image, self.timer)
                results = self.estimator.predict_faces(frame.image, faces, self.timer)
                with self.timer.stage("postprocess"):
                    tracks = self.tracker.update([r.face.box for r in results], [r.prediction for r in results])
                if self.images:
                    with self.timer.stage("draw"):
                        status = (f"{fps:.1f} fps  {len(tracks)} faces  {self.model.info.target}/{self.o.delegate}"
                                  f"  {self.detector.name}")
                        self.outputs.draw(frame.image, tracks, status)
                times = self.timer.end_frame()
                record = _record(frame, tracks, results, times)
                for sink in self.sinks:
                    sink.write(record)
                self.frames += 1  # counted once it is out: a stop during the frame-rate wait below loses nothing
                self.faces += len(results)
                if self.images and self.outputs.send(record):
                    return
                if self.o.max_fps:  # a frame-rate cap: wait out the rest of this frame's share of a second
                    time.sleep(max(0.0, began + 1 / self.o.max_fps - time.perf_counter()))
                now = time.perf_counter()
                self.windows.add(times, now)
                if self.first_interval is None:
                    self.first_interval = now - last
                else:
                    self.frame_seconds.append(now - last)
                fps = 0.9 * fps + 0.1 / max(now - last, 1e-6) if fps else 1 / max(now - last, 1e-6)
                last = now
                if (self.o.max_frames and self.frames >= self.o.max_frames) or (
                        self.o.duration and now - start >= self.o.duration):
                    return
            if self.frames == 0 and isinstance(self.source, ImageSource):
                self.source.check_any_read()
        finally:
            reader.close()

    def report(self, started: float, thermal_before: dict, status: str, error: str | None) -> dict:
        wall = time.perf_counter() - started
        per_frame = self.frame_seconds if len(self.frame_seconds) or self.first_interval is None \
            else [self.first_interval]
        return {
            "format": REPORT_FORMAT, "status": status, "error": error,
            "model": str(self.o.model), "target": self.model.info.target, "input_size": self.model.size,
            "delegate": self.o.delegate, "threads": self.o.threads, "delegate_coverage": self.model.coverage(),
            "detector": self.detector.name, "source": self.source.description,
            "frames": self.frames, "faces": self.faces, "tracks": self.tracker.next_id - 1,
            "dropped_frames": self.reader.dropped if self.reader else 0,
            "skipped_files": self.source.skipped, "source_reopened": getattr(self.source, "reopened", 0),
            "source_loops": getattr(self.source, "loops", 0), "max_fps": self.o.max_fps,
            "wall_s": round(wall, 3), "fps": round(self.frames / wall, 3) if wall > 0 else 0.0,
            "frame_interval": summarize(per_frame), "stages": self.timer.summary(),
            **self.pipeline_report(),
            "system": system_info.describe(), "thermal_before": thermal_before,
            "thermal_after": system_info.thermal_state(),
            "outputs": {k: str(v) for k, v in (("video", self.o.video), ("jsonl", self.o.jsonl)) if v},
        }

    def pipeline_report(self) -> dict:
        """The detection settings, frames detected against carried forward, and fps and stage p50 per window."""
        windows = self.windows.finish()
        return {"detect_size": self.o.detect_size, "detect_every": self.o.detect_every, "overlap": self.o.overlap,
                "frames_detected": self.finder.detected, "frames_carried": self.finder.carried,
                "frames_with_faces": self.finder.with_faces,
                "duration_s": self.o.duration, "window_s": self.o.window_s, "windows": windows,
                "windows_dropped": self.windows.dropped,
                "fps_drift": drift(windows[0]["fps"], windows[-1]["fps"]) if len(windows) >= 2 else None}

    def close(self, ok: bool) -> str | None:
        """Close every sink, each even when another fails; the first failure's message, or None."""
        errors = []
        if hasattr(self, "outputs"):
            self.outputs.close()
            if self.outputs.error:
                errors.append(user_message(self.outputs.error))
        for sink in (*self.sinks, *self.images):
            try:
                sink.close(ok)
            except (EdgeAgeError, OSError) as exc:
                errors.append(user_message(exc))
        return errors[0] if errors else None

    def finish(self, started: float, thermal_before: dict, status: str, error: str | None) -> tuple[dict, str | None]:
        """Close the sinks and write ``run_report.json`` whatever happened (a full disk included); the
        report and the first error."""
        closing = self.close(ok=True)
        error = error or closing
        report = self.report(started, thermal_before, "failed" if error and status == "finished" else status, error)
        try:
            write_json(self.out / "run_report.json", report)
        except EdgeAgeError as exc:
            error = error or exc.for_cli()
        return report, error


def _early_report(options: RunOptions, exc: BaseException) -> None:
    """``run_report.json`` for a run that failed before its first frame (a missing delegate, a bad source)."""
    report = {"format": REPORT_FORMAT, "status": "failed", "error": user_message(exc), "model": str(options.model),
              "source": options.source, "delegate": options.delegate, "threads": options.threads,
              "detector": options.detector, "frames": 0, "faces": 0, "system": system_info.describe()}
    try:
        write_json(atomic.writable_dir(options.out) / "run_report.json", report)
    except EdgeAgeError:
        pass  # the first error is the one to show


def run(options: RunOptions) -> dict:
    """Run the pipeline until the input ends, Ctrl-C or SIGTERM (status "stopped", a clean exit); returns and
    writes ``run_report.json``, also when the run fails before its first frame."""
    thermal_before = system_info.thermal_state()
    started = time.perf_counter()
    try:
        job = Run(options)
    except (EdgeAgeError, OSError) as exc:
        _early_report(options, exc)
        raise
    previous = signal.signal(signal.SIGTERM, _sigterm)
    status, error = "finished", None
    try:
        job.loop()
    except Stopped:
        status = "stopped"
    except KeyboardInterrupt:
        status = "interrupted"
    except (EdgeAgeError, OSError) as exc:
        status, error = "failed", user_message(exc)
    except BaseException as exc:  # a bug: still report what ran, then show it
        job.finish(started, thermal_before, "failed", user_message(exc))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    report, error = job.finish(started, thermal_before, status, error)
    if status == "interrupted":
        raise KeyboardInterrupt
    if error:
        raise EdgeAgeError(error)
    return report
