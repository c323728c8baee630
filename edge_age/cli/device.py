"""``edge-age run``, ``predict``, ``serve`` and ``run-table``: the on-device runtime."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from edge_age.cli.options import (
    DelegateLibraryOpt,
    DelegateOpt,
    DetectorModelOpt,
    DetectorOpt,
    DetectSizeOpt,
    DeviceOpt,
    ModelOpt,
    SkipBadLabelsOpt,
)
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files.jsonio import write_json
from firmware_host.pipeline.defaults import DETECT_EVERY, WINDOW_S

log = logging.getLogger(__name__)


def run(
    model: str | None = ModelOpt,
    source: str = typer.Option("0", "--source", "-s", help="Camera index, picamera, video file, image or folder, or "
                                                           "stream URL."),
    out: Path = typer.Option(Path("runs/run"), "--out", "-o", help="Folder for run_report.json."),
    delegate: str = DelegateOpt,
    threads: int = typer.Option(2, min=1, help="Interpreter threads."),
    delegate_library: str | None = DelegateLibraryOpt,
    device: str | None = DeviceOpt,
    detector: str = DetectorOpt,
    detector_model: Path | None = DetectorModelOpt,
    width: int | None = typer.Option(None, help="Camera frame width."),
    height: int | None = typer.Option(None, help="Camera frame height."),
    fps: float | None = typer.Option(None, help="Camera frame rate (and of the --video file)."),
    video: Path | None = typer.Option(None, help="Write the annotated frames to this video (.avi or .mp4)."),
    jsonl: Path | None = typer.Option(None, help="Write one JSON record per frame here."),
    serve: str | None = typer.Option(None, help="Serve an MJPEG stream and page on HOST:PORT (or PORT, loopback)."),
    show: bool = typer.Option(False, "--show", help="Show a window (needs a display and an OpenCV build with GUI)."),
    max_frames: int | None = typer.Option(None, min=1, help="Stop after this many frames."),
    duration: float | None = typer.Option(None, help="Stop after this many seconds."),
    window: float = typer.Option(WINDOW_S, help="Seconds per window of fps and stage p50 in run_report.json."),
    min_face: int = typer.Option(24, min=0, help="Ignore faces narrower than this many pixels."),
    smoothing: float = typer.Option(0.3, min=0.01, max=1.0, help="Weight of the newest frame in a track's age and "
                                                                 "gender."),
    detect_size: int = DetectSizeOpt,
    detect_every: int = typer.Option(DETECT_EVERY, help="Detect on one frame in N; on the others, faces are carried "
                                     "forward by optical flow (and still inferred). 1 = detect every frame."),
    overlap: bool = typer.Option(False, "--overlap/--no-overlap", help="Draw and encode the annotated frames on a "
                                 "second thread."),
    loop: bool = typer.Option(False, "--loop", help="Start a video file again at its end (until --max-frames, "
                              "--duration, Ctrl-C or SIGTERM)."),
    max_fps: float | None = typer.Option(None, help="Process at most this many frames per second (a video file "
                                            "is then read at that pace; a camera's extra frames are dropped)."),
    systemd_unit: bool = typer.Option(False, "--systemd-unit", help="Print a systemd unit that runs this command "
                                      "with --serve (0.0.0.0:8080 unless given) from boot, and exit."),
) -> None:
    """The camera demo: capture, detect, align, age and gender, track, draw; per-stage latency in run_report.json."""
    if systemd_unit:
        from edge_age.service import systemd_unit as unit_text
        typer.echo(unit_text(sys.argv[1:]), nl=False)
        return
    from edge_age.members import resolve_tflite
    from firmware_host.pipeline.runner import RunOptions
    from firmware_host.pipeline.runner import run as run_pipeline

    options = RunOptions(resolve_tflite(model), source, out=out, delegate=delegate, threads=threads,
                         delegate_library=delegate_library, device=device, detector=detector,
                         detector_model=detector_model, width=width, height=height, fps=fps, video=video, jsonl=jsonl,
                         serve=serve, show=show, max_frames=max_frames, min_face=min_face, smoothing=smoothing,
                         detect_size=detect_size, detect_every=detect_every, duration=duration, window_s=window,
                         overlap=overlap, loop=loop, max_fps=max_fps)
    report = run_pipeline(options)
    stages = ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in report["stages"].items() if v.get("count"))
    typer.echo(f"{report['frames']} frames, {report['faces']} faces, {report['tracks']} tracks, {report['fps']:.1f} "
               "fps "
               f"({report['detector']} at {report['detect_size'] or 'full frame'}, every {report['detect_every']}: "
               f"{report['frames_detected']} frames detected, {report['frames_carried']} carried; "
               f"{report['target']}/{report['delegate']}); p50 ms: {stages}")
    if report["fps_drift"]:
        d = report["fps_drift"]
        typer.echo(f"fps {d['first']:.1f} in the first {report['window_s']:g} s window, {d['last']:.1f} in the last "
                   f"({d['change']:+.1%}{', drifted' if d['drifted'] else ''})")
    typer.echo(f"wrote {out}/run_report.json")


def predict(
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    model: str | None = ModelOpt,
    out: Path = typer.Option(Path("runs/predict"), "--out", "-o", help="Folder for annotated images, faces.csv, "
                                                                       "faces.json."),
    labels: Path | None = typer.Option(None, help="CSV file,age[,gender] (file = image name): also report accuracy."),
    delegate: str = DelegateOpt,
    threads: int = typer.Option(2, min=1),
    delegate_library: str | None = DelegateLibraryOpt,
    device: str | None = DeviceOpt,
    detector: str = DetectorOpt,
    detector_model: Path | None = DetectorModelOpt,
    detect_size: int = DetectSizeOpt,
    min_face: int = typer.Option(0, min=0, help="Ignore faces narrower than this many pixels."),
    crops: bool = typer.Option(False, "--crops", help="The images are face chips already (as UTKFace's): predict "
                               "each image whole, one face, neither detected nor aligned."),
    skip_bad_labels: bool = SkipBadLabelsOpt,
) -> None:
    """Faces, ages and genders in images: annotated copies, faces.csv and faces.json (and accuracy with --labels)."""
    from edge_age.api import load
    from edge_age.eval.evaluation import read_labels
    from firmware_host.detect.reduced import check_size
    from firmware_host.logs import STATUS
    from firmware_host.pipeline.photos import image_files, predict_images, write_rows
    from firmware_host.progress import track

    check_size(detect_size)  # the options first, then the inputs, then the model
    truth = read_labels(labels, skip_bad_labels) if labels else None
    image_files(images)  # a path that does not exist is an error before the model loads
    estimator = load(model, detector=None if crops else detector, threads=threads, detector_model=detector_model,
                     detect_size=detect_size, min_face=min_face, delegate=delegate, delegate_library=delegate_library,
                     device=device)
    log.info("edge-age: %s", estimator.describe(), extra=STATUS)
    rows, timer, unreadable = predict_images(images, estimator, out, crops=crops,
                                             progress=lambda items, total: track(items, "predicting", total))
    write_rows(rows, out)
    found = {r["file"] for r in rows if r["face"] >= 0}
    typer.echo(f"{len(found)} of {len({r['file'] for r in rows})} images with a face, "
               f"{sum(r['face'] >= 0 for r in rows)} "
               f"faces ({'--crops' if crops else estimator.detector.name}); unreadable: {len(unreadable)}")
    typer.echo("p50 ms: " + ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in timer.summary().items() if v.get("count")))
    if truth is not None:
        _report_accuracy(rows, truth, out)
    typer.echo(f"wrote {out}/faces.csv and faces.json")


def serve(
    model: str | None = ModelOpt,
    models: str | None = typer.Option(None, "--models", help="Models a request or the page may pick (?model=NAME): "
                                      "comma-separated member names or .tflite paths, named by member or file name "
                                      "[default: every member of the family with the cpu delegate, and MODEL]."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free one, printed at start)."),
    threads: int = typer.Option(2, min=1, help="Requests processed at once: one single-threaded interpreter and "
                                               "detector each."),
    queue: int = typer.Option(32, min=0, help="Requests that may wait for a worker; more are answered 503."),
    max_body: float = typer.Option(10.0, min=0.001, help="Largest accepted body in MiB (more is answered 413)."),
    timeout: float = typer.Option(30.0, min=0.1, help="Seconds a request may take, queue included (then 503)."),
    detector: str = DetectorOpt,
    detector_model: Path | None = DetectorModelOpt,
    delegate: str = DelegateOpt,
    delegate_library: str | None = DelegateLibraryOpt,
    device: str | None = DeviceOpt,
) -> None:
    """Age and gender over HTTP: POST /predict (an image; ?model= picks a served model), GET / (a page for photos
    and the webcam), /health, /info."""
    import logging

    from firmware_host.serve.app import LOG, ServeOptions
    from firmware_host.serve.app import serve as run_server

    handler = logging.StreamHandler(sys.stderr)  # one timestamped line per request, beside main()'s warnings
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False

    choices, default = served_models(model, models, every_member=delegate == "cpu")
    run_server(ServeOptions(models=choices, default=default, host=host, port=port, threads=threads, queue=queue,
                            max_body=int(max_body * 2**20), timeout=timeout, detector=detector,
                            detector_model=detector_model, delegate=delegate, library=delegate_library, device=device))


def served_models(model: str | None, models: str | None, *, every_member: bool) -> tuple[dict[str, Path], str]:
    """The models ``serve`` loads, by the name a request picks them with (a member's name, else the file's name),
    and the default's name: ``--models`` (or every member when ``every_member``), and ``--model`` first."""
    from edge_age.members import DEFAULT_MEMBER, is_member_name, members, resolve_tflite

    def named(value: str) -> tuple[str, Path]:
        return (value, resolve_tflite(value)) if is_member_name(value) else (Path(value).name, Path(value))

    default = named(model or DEFAULT_MEMBER)
    if models is not None:
        others = [named(v.strip()) for v in models.split(",") if v.strip()]
    else:
        others = [(m.name, m.tflite()) for m in members()] if every_member else []
    chosen = {} if default in others else {default[0]: default[1]}
    for name, path in others + [default]:
        if chosen.setdefault(name, path).resolve() != path.resolve():
            raise EdgeAgeError(f"two models to serve are named {literal(name)}: {literal(chosen[name])} and "
                               f"{literal(path)}; give {{}} files of different names", option="--models",
                               parameter="models")
    return chosen, default[0]


def run_table(
    reports: list[Path] = typer.Argument(..., help="run_report.json files from 'edge-age run'."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the table to this Markdown file."),
) -> None:
    """Compare runs: settings, frames per second and per-stage p50 of each run_report.json, as a Markdown table."""
    from edge_age.report.run_table import run_table as table_of
    from firmware_host.files import atomic

    table = table_of(reports)
    typer.echo(table)
    if out:
        atomic.write_text(out, table)


def _report_accuracy(rows: list[dict], labels: tuple[list, list[str]], out: Path) -> None:
    """Accuracy of the largest face per labelled image; images without a face are counted apart.

    A label's ``file`` is an image's path as in ``faces.csv``, or its bare name when no other image has it."""
    from collections import Counter

    from edge_age.eval.metrics import age_metrics

    truth = {f: (age, gender) for f, age, gender, _ in labels[0]}
    names = Counter(Path(f).name for f in dict.fromkeys(r["file"] for r in rows))
    best: dict[str, dict] = {}
    for r in rows:
        key = r["file"] if r["file"] in truth else Path(r["file"]).name
        if key not in truth or (key != r["file"] and names[key] > 1) or r["face"] < 0:
            continue
        if key not in best or r["w"] * r["h"] > best[key]["w"] * best[key]["h"]:
            best[key] = r
    if not best:
        raise EdgeAgeError("no labelled image had a face found in it: nothing to score")
    keys = sorted(best)
    result = age_metrics([best[k]["age"] for k in keys], [truth[k][0] for k in keys],
                         [best[k]["female"] for k in keys], [truth[k][1] for k in keys])
    result["labelled_images"] = len(truth)
    result["without_face"] = sorted(set(truth) - set(best))
    result["bad_label_rows"] = labels[1]
    write_json(out / "accuracy.json", result)
    gender = f", gender {result['gender_accuracy']:.1%}" if "gender_accuracy" in result else ""
    typer.echo(f"accuracy on {result['n']} of {len(truth)} labelled images: MAE {result['mae']:.2f}, "
               f"CS@5 {result['cs5']:.1%}{gender}")
