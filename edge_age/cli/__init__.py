"""The ``edge-age`` command line. Heavy libraries (TensorFlow, matplotlib) load inside commands."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from firmware_host.defaults import DETECT_EVERY, DETECT_SIZE, WINDOW_S
from firmware_host.errors import EdgeAgeError
from firmware_host.jsonio import to_json, write_json
from firmware_host.paths import data_root

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Face age and gender estimation from training to small devices.")


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show TensorFlow's and LiteRT's own log "
                                 "lines (absl, oneDNN, CUDA, the XNNPACK delegate), hidden by default."),
) -> None:
    """Face age and gender estimation from training to small devices."""
    if verbose:
        from firmware_host.quiet import set_verbose
        set_verbose()


data_app = typer.Typer(no_args_is_help=True, help="Read, audit and split UTKFace-style face crops.")
app.add_typer(data_app, name="data")

SkipBadLabelsOpt = typer.Option(False, "--skip-bad-labels", help="Skip and count bad rows of --labels (age outside "
                                "0..116, gender not 0/1/empty, a file listed twice) instead of stopping at the first.")
DataArg = typer.Argument(None, help="Folder or .tar/.tar.gz/.zip of face crops [default: $EDGE_AGE_DATA].",
                         show_default=False)
ChipsArg = typer.Argument(None, help="Folder of face chips (not an archive) [default: $EDGE_AGE_DATA].",
                          show_default=False)


@data_app.command("audit")
def data_audit(
    data: Path | None = DataArg,
    out: Path = typer.Option(Path("runs/audit"), "--out", "-o", help="Folder for the report, plots and audit.json."),
    split: Path | None = typer.Option(None, help="A split CSV: adds the age histogram of each side."),
    size: int = typer.Option(64, min=16, max=512, help="Image size of the decoded-image cache."),
    cache: bool = typer.Option(True, help="Use the decoded-image cache."),
) -> None:
    """Count, check and plot a dataset: names, unreadable files, duplicates, conflicting labels."""
    from edge_age.data.audit import audit_faces
    from edge_age.data.faceset import load_faces
    from edge_age.data.split import read_split
    from edge_age.report.audit_page import write_audit_report

    start = time.perf_counter()
    faces = load_faces(data, size=size, use_cache=cache)
    split_rows = read_split(split) if split else None
    if split_rows:
        missing = {r.file for r in split_rows.rows} - set(faces.names)
        if missing:
            raise EdgeAgeError(f"split file {split} does not match {faces.root}: {len(missing)} of its files are not "
                               "there")
    summary = write_audit_report(audit_faces(faces), out, split_rows)
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    typer.echo(to_json(counts, indent=None))
    typer.echo(f"wrote {out}/report.html, report.md, audit.json in {time.perf_counter() - start:.1f} s"
               f" ({'cached' if faces.from_cache else 'decoded'} images)")


@data_app.command("split")
def data_split(
    data: Path | None = DataArg,
    out: Path = typer.Option(Path("split.csv"), "--out", "-o", help="Split CSV to write (plus a .json beside it)."),
    seed: int = typer.Option(0, help="Seed of the group order."),
    train: float = typer.Option(0.8, min=0.0, max=1.0),
    val: float = typer.Option(0.1, min=0.0, max=1.0),
    test: float = typer.Option(0.1, min=0.0, max=1.0),
    age_tolerance: int = typer.Option(4, min=0, help="Duplicates whose ages span more years are dropped."),
    check: bool = typer.Option(False, "--check", help="Print each side's size and distribution."),
) -> None:
    """Split into train/val/test by groups (duplicates, same minute), stratified by age bin and gender."""
    from edge_age.data.audit import audit_faces
    from edge_age.data.faceset import load_faces
    from edge_age.data.split import check_split, make_split, write_split
    from firmware_host import atomic

    faces = load_faces(data)
    result = make_split(audit_faces(faces), (train, val, test), seed, age_tolerance)
    report = check_split(result)
    meta = {"data": str(faces.root), "data_fingerprint": faces.fingerprint, "seed": seed,
            "fractions": [train, val, test], "age_tolerance": age_tolerance, "policy": dict(result.policy), **report}
    with atomic.file_set(out.parent) as staging:  # the CSV and its .json replace the old pair together
        write_split(result, staging / out.name)
        write_json(staging / out.with_suffix(".json").name, meta)
    sizes = ", ".join(f"{s} {v['images']:,}" for s, v in report["sides"].items())
    typer.echo(f"wrote {out}: {sizes}; policy {dict(result.policy)}")
    if check:
        _print_check(report)


@data_app.command("check")
def data_check(split: Path = typer.Argument(..., help="A split CSV written by 'edge-age data split'.")) -> None:
    """Print each side's size and age/gender distribution and the largest difference between sides."""
    from edge_age.data.split import check_split, read_split

    _print_check(check_split(read_split(split)))


@data_app.command("calibration")
def data_calibration(
    split: Path = typer.Argument(..., help="A split CSV: images are drawn from its train side."),
    out: Path = typer.Option(Path("calibration_data/train_manifest.csv"), "--out", "-o"),
    n: int = typer.Option(1000, min=1, help="How many file names to list (any prefix is stratified)."),
    seed: int = typer.Option(0),
) -> None:
    """Write the int8 calibration manifest: training file names ordered so every prefix is stratified."""
    from edge_age.data.calibration import choose, write_manifest
    from edge_age.data.split import read_split

    rows = choose(read_split(split), n, seed=seed)
    write_manifest(rows, out)
    typer.echo(f"wrote {out}: {len(rows)} training images, stratified by age bin, gender and race (seed {seed})")


def _chips(data: Path | None, count: int | None, seed: int, split: Path | None, subset: str):
    from edge_age.data.scenes import read_chips
    from edge_age.data.split import read_split

    folder = data_root(data)
    if folder is None:
        raise EdgeAgeError("give a folder of face chips (or set EDGE_AGE_DATA)")
    names = None
    if split:
        present = {p.name for p in Path(folder).iterdir()} if Path(folder).is_dir() else set()
        names = [r.file for r in read_split(split).side(subset) if r.file in present]
    return read_chips(Path(folder), names, count, seed)


@data_app.command("photos")
def data_photos(
    data: Path | None = ChipsArg,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the photos and labels.csv."),
    count: int | None = typer.Option(None, min=1, help="Number of photos [default: one per chip]."),
    split: Path | None = typer.Option(None, help="Only chips on one side of this split."),
    subset: str = typer.Option("test", help="The side of --split."),
    width: int = typer.Option(640, min=64),
    height: int = typer.Option(480, min=64),
    grey_every: int = typer.Option(5, min=0, help="Every n-th photo in greyscale (0 = none)."),
    seed: int = typer.Option(0),
) -> None:
    """Raw-like photos: each chip at a random place, scale and small rotation in a larger frame."""
    from edge_age.data.scenes import make_photos

    chips = _chips(data, count, seed, split, subset)
    side = min(width, height)
    labels = make_photos(chips, out, (width, height), (0.19 * side, 0.54 * side), seed=seed, grey_every=grey_every)
    typer.echo(f"wrote {len(chips)} photos and {labels}")


@data_app.command("video")
def data_video(
    data: Path | None = ChipsArg,
    out: Path = typer.Option(..., "--out", "-o", help="Video file to write (.avi, Motion JPEG)."),
    faces: int = typer.Option(4, min=1, max=12, help="Faces in the video."),
    churn: bool = typer.Option(True, help="With 2 or more faces, one leaves and one enters half-way."),
    frames: int = typer.Option(90, min=2),
    fps: float = typer.Option(15.0, min=1.0),
    width: int = typer.Option(640, min=64),
    height: int = typer.Option(480, min=64),
    split: Path | None = typer.Option(None, help="Only chips on one side of this split."),
    subset: str = typer.Option("test", help="The side of --split."),
    seed: int = typer.Option(0),
) -> None:
    """A test video of moving faces, with the true box of every face in every frame (<video>.truth.json)."""
    from edge_age.data.scenes import make_video

    path = make_video(_chips(data, faces, seed, split, subset), out, frames, fps, (width, height), seed, churn)
    typer.echo(f"wrote {path} and {path.with_suffix('.truth.json')}")


def _print_check(report: dict) -> None:
    sides = report["sides"]
    bins = list(next(iter(sides.values()))["age_bins"])
    typer.echo(f"{'':8}" + "".join(f"{s:>10}" for s in sides))
    typer.echo(f"{'images':8}" + "".join(f"{v['images']:>10,}" for v in sides.values()))
    typer.echo(f"{'groups':8}" + "".join(f"{v['groups']:>10,}" for v in sides.values()))
    typer.echo(f"{'mean age':8}" + "".join(f"{v['mean_age']:>10.2f}" for v in sides.values()))
    typer.echo(f"{'female':8}" + "".join(f"{v['female']:>10.1%}" for v in sides.values()))
    for b in bins:
        typer.echo(f"{b:8}" + "".join(f"{v['age_bins'][b]:>10.1%}" for v in sides.values()))
    typer.echo(f"largest share difference between sides: {report['largest_share_difference']:.2%} "
               f"({report['largest_difference_in']}); groups on several sides: {report['groups_on_several_sides']}")


@app.command()
def train(
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    split: Path = typer.Option(..., help="Split CSV from 'edge-age data split'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    preset: str | None = typer.Option(None, help="Start from a preset: reference, tiny, or a family member m, s or n."),
    arch: str | None = typer.Option(None, help="mobilenet_v2, mobilenet_v3_small or mobilenet_v3_large."),
    alpha: float | None = typer.Option(None, help="Width multiplier."),
    input_size: int | None = typer.Option(None, help="Input size in pixels (square)."),
    minimalistic: bool | None = typer.Option(None, help="MobileNetV3 minimalistic (no SE, no hard-swish)."),
    head: str | None = typer.Option(None, help="Age head: ldl (label distribution) or regression."),
    epochs: int | None = typer.Option(None),
    batch: int | None = typer.Option(None),
    lr: float | None = typer.Option(None, help="Peak learning rate (cosine schedule with warm-up)."),
    sigma: float | None = typer.Option(None, help="Spread of the Gaussian age targets, in years."),
    weights: Path | None = typer.Option(None, help="ImageNet no-top .h5 for the backbone; none = from scratch."),
    augment: float | None = typer.Option(None, help="Augmentation strength (0 = none)."),
    qat_epochs: int | None = typer.Option(None, help="Quantization-aware fine-tuning epochs after float training."),
    qat_lr: float | None = typer.Option(None, help="Peak learning rate of the QAT fine-tuning."),
    patience: int | None = typer.Option(None, help="Early stopping patience on validation MAE, in epochs."),
    seed: int | None = typer.Option(None),
    strategy: str | None = typer.Option(None, help="default, mirrored or multi-worker (TF_CONFIG)."),
    soft_targets: Path | None = typer.Option(None, help="Distil from a teacher's soft_targets.npz ('edge-age "
                                                        "teacher')."),
    teacher_weight: float | None = typer.Option(None, help="Share of the teacher's age distribution in the age loss "
                                                           "[0.5]."),
    gender_teacher_weight: float | None = typer.Option(None, help="Share of the teacher's P(female) in the gender "
                                                                  "target [0.5]."),
    temperature: float | None = typer.Option(None, help="Distillation temperature [1.0]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch."),
) -> None:
    """Train the age/gender model (float, then quantization-aware) and evaluate it on the test side."""
    from dataclasses import replace

    from edge_age.train.loop import PRESETS, TrainConfig
    from edge_age.train.loop import train as run_training
    from edge_age.train.models import ModelSpec

    if preset and preset not in PRESETS:
        raise EdgeAgeError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    config = TrainConfig(**PRESETS.get(preset or "", {}))
    given = {k: v for k, v in dict(arch=arch, alpha=alpha, input_size=input_size, minimalistic=minimalistic,
                                      head=head).items() if v is not None}
    spec = replace(config.spec, **given) if given else config.spec
    options = {k: v for k, v in dict(epochs=epochs, batch=batch, lr=lr, sigma=sigma, augment=augment,
                                     qat_epochs=qat_epochs, qat_lr=qat_lr, patience=patience, seed=seed,
                                     strategy=strategy,
                                     weights=str(weights) if weights else None,
                                     soft_targets=str(soft_targets) if soft_targets else None,
                                     teacher_weight=teacher_weight, gender_teacher_weight=gender_teacher_weight,
                                     temperature=temperature).items() if v is not None}
    config = replace(config, spec=ModelSpec(**spec.to_dict()).check(), **options)
    metrics = run_training(data, split, out, config, resume=resume)
    for phase in ("float", "qat"):
        if phase in metrics:
            m = metrics[phase]
            typer.echo(f"{phase}: test MAE {m['mae']:.2f}, CS@5 {m['cs5']:.1%}, "
                       f"gender {m.get('gender_accuracy', float('nan')):.1%} (n={m['n']})")
    typer.echo(f"wrote {out} in {metrics['train_minutes']} min")


@app.command()
def teacher(
    members: list[Path] = typer.Argument(..., help="Float .keras/.h5 models to average (each also on the mirror "
                                                   "image)."),
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    split: Path = typer.Option(..., help="Split CSV: soft targets for its train and val sides."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for teacher.keras, soft_targets.npz, teacher.json."),
) -> None:
    """Build the teacher ensemble and store its soft targets for distillation ('edge-age train --soft-targets')."""
    from edge_age.train.teacher import make_teacher
    meta = make_teacher(members, data=data, split_path=split, out=out)
    typer.echo(f"wrote {out}/teacher.keras and soft targets of {meta['faces']} faces ({', '.join(meta['sides'])})")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="A .keras/.h5 (float or QAT) or .tflite model, or a member's name "
                                          "(its int8-qat file)."),
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    split: Path | None = typer.Option(None, help="Split CSV: evaluate on one side of it."),
    subset: str = typer.Option("test", help="train, val or test (with --split)."),
    labels: Path | None = typer.Option(None, help="CSV with columns file, age[, gender], paths relative to DATA."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics and breakdowns here."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the evaluation page: report.html "
                                       "(self-contained), report.md and the plots."),
    detect: bool = typer.Option(False, "--detect", help="DATA holds raw photos: detect and align faces first (needs "
                                                        "--labels)."),
    detector: str = typer.Option("auto", help="With --detect: auto, yunet, blazeface or haar."),
    detector_model: Path | None = typer.Option(None, help="With --detect: the detector's model file."),
    detect_size: int = typer.Option(DETECT_SIZE, help="With --detect: longer side, in pixels, of the photo the "
                                    "detector sees (0 = the full photo); faces are cropped at full resolution."),
    chip_resolution: int | None = typer.Option(None, min=8, help="With --detect: crop faces at this many pixels "
                                                  "first, as the training chips [default: from the .tflite sidecar]."),
    skip_bad_labels: bool = SkipBadLabelsOpt,
) -> None:
    """Accuracy of a model: MAE, CS@5, epsilon error, gender accuracy and AUC, breakdowns; --out adds a page."""
    from edge_age.eval.evaluation import evaluate_file
    from edge_age.members import resolve_tflite

    model = resolve_tflite(model)
    if split and labels:
        raise EdgeAgeError("give --split or --labels, not both")
    if out:
        from edge_age.report.page import pyplot
        pyplot()  # fail before the model runs when matplotlib is missing
    finder = None
    if detect:
        from firmware_host.detectors import make_detector
        if not labels or not data:
            raise EdgeAgeError("--detect needs --data (the photos' folder) and --labels (file,age[,gender])")
        finder = make_detector(detector, detector_model, detect_size=detect_size)
    result, (pred_age, pred_gender, faces) = evaluate_file(model, data, split, subset, labels, detector=finder,
                                                            resolution=chip_resolution, skip_bad_labels=skip_bad_labels)
    if json_out:
        write_json(json_out, result)
    if out:
        from edge_age.report.eval_page import Evaluated, write_page
        selection = (f"side {subset} of {split}" if split else
                     f"largest face found by {finder.name} in each photo of {labels}" if finder else
                     f"listed in {labels}" if labels else "every file name with readable labels")
        source = str(data_root(data))
        page = write_page(out, Evaluated(result, pred_age, pred_gender, faces, source, selection,
                                         photos=data if finder else None))
        typer.echo(f"wrote {page}, report.md and the plots")
    if finder:
        d = result["detection"]
        typer.echo(f"{d['detector']}: a face in {d['faces_found']} of {d['photos']} photos")
    gender = (f", gender {result['gender_accuracy']:.1%} (AUC {result['gender_auc']:.3f})"
              if "gender_accuracy" in result else "")
    typer.echo(f"{model.name}: n={result['n']}, MAE {result['mae']:.2f}, CS@5 {result['cs5']:.1%}, "
               f"epsilon {result['epsilon_error']:.3f}{gender}{_skipped_text(result)}")


def _skipped_text(result: dict) -> str:
    """How many labelled files and label rows were left out, if any."""
    parts = [f"{len(result[k])} {what}" for k, what in (("unreadable_files", "undecodable files"),
                                                         ("bad_label_rows", "bad label rows")) if result.get(k)]
    return f"; skipped {' and '.join(parts)}" if parts else ""


@app.command()
def convert(
    model: str | None = typer.Argument(None, help="Float .keras/.h5 model, or a member's name "
                                            "[default: the bundled reference model]."),
    targets: str = typer.Option("float32,float16,dynamic,int8,int8-qat,edgetpu",
                                help="Comma-separated targets, or 'all' (adds int16x8 and int8-mixed)."),
    out: Path = typer.Option(Path("runs/convert"), "--out", "-o", help="Folder for the .tflite files and reports."),
    data: Path | None = typer.Option(None, "--data", help="Face crops for calibration and validation [default: "
                                                          "$EDGE_AGE_DATA]."),
    split: Path | None = typer.Option(None, help="Split CSV: calibrate on its train side, validate on its test side."),
    calib: int = typer.Option(300, min=1, help="Number of calibration images."),
    calib_draw: str = typer.Option("stratified", help="stratified (by age bin, gender, race) or random."),
    qat: Path | None = typer.Option(None, help="The QAT twin [default: qat.h5 beside MODEL]."),
    threshold: float = typer.Option(0.5, min=0.0, help="Reject a file whose MAE exceeds the float model's by more "
                                                       "years."),
    debug_images: int | None = typer.Option(None, help="Validation faces for the per-layer error of integer files "
                                               "[default: 100, or all when fewer]."),
    budget: float = typer.Option(0.1, help="int8-mixed: MAE allowed above the float model's, in years."),
    max_float: int = typer.Option(8, help="int8-mixed: at most this many layers kept in float."),
    int16x8_faces: int = typer.Option(500, help="Validate int16x8 on this many faces spread over the validation "
                                      "set (its reference kernels are slow); 0: all."),
) -> None:
    """Convert to TFLite (float32, float16, dynamic, int8, int8-qat, edgetpu; int16x8, int8-mixed on request),
    validate each file, report per-layer quantization error."""
    from converters.targets import TARGETS
    from edge_age.conversion import convert as run_convert
    from edge_age.members import is_member_name, member, resolve_keras
    from edge_age.report.convert_page import table

    if model is not None and is_member_name(model):
        qat = qat or member(model).keras("qat")
    model = resolve_keras(model)
    data = data_root(data)
    if calib_draw not in ("stratified", "random"):
        raise EdgeAgeError(f"--calib-draw must be stratified or random, not {calib_draw!r}")
    names = list(TARGETS) if targets.strip() == "all" else [t.strip() for t in targets.split(",") if t.strip()]
    report = run_convert(model, names, out, data, split=split, calib=calib, qat=qat, threshold=threshold,
                         stratified=calib_draw == "stratified",
                         debug_images=debug_images, budget=budget, max_float=max_float, int16x8_faces=int16x8_faces)
    typer.echo(table(report))
    for row in report["targets"]:
        if row["reason"].startswith("over budget"):
            typer.echo(f"{row['target']}: {row['reason']}")
    typer.echo(f"wrote {out}/convert_report.md, convert_report.html and convert_report.json")


ModelOpt = typer.Option(None, "--model", "-m", help="A .tflite from 'edge-age convert' (its .json sidecar beside it), "
                        "or a member of the family: m, s or n ('edge-age models') [default: s].")
DelegateOpt = typer.Option("cpu", help="cpu (XNNPACK), gpu or edgetpu.")
DelegateLibraryOpt = typer.Option(None, help="Delegate library [gpu: $EDGE_AGE_GPU_DELEGATE; edgetpu: "
                                             "libedgetpu.so.1].")
DeviceOpt = typer.Option(None, help="Edge TPU to use: usb, usb:N or pci:N [default: the first found].")
DetectorOpt = typer.Option("auto", help="auto (best found), yunet, blazeface or haar.")
DetectorModelOpt = typer.Option(None, help="Detector model [yunet: $EDGE_AGE_YUNET; blazeface: $EDGE_AGE_BLAZEFACE].")
DetectSizeOpt = typer.Option(DETECT_SIZE, help="Longer side, in pixels, of the frame the detector sees (0 = the full "
                             "frame); boxes and landmarks are mapped back, faces are cropped at full resolution.")


@app.command()
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
) -> None:
    """The camera demo: capture, detect, align, age and gender, track, draw; per-stage latency in run_report.json."""
    from edge_age.members import resolve_tflite
    from firmware_host.runner import RunOptions
    from firmware_host.runner import run as run_pipeline

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


@app.command()
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
    skip_bad_labels: bool = SkipBadLabelsOpt,
) -> None:
    """Faces, ages and genders in images: annotated copies, faces.csv and faces.json (and accuracy with --labels)."""
    from edge_age.eval.evaluation import read_labels
    from edge_age.members import resolve_tflite
    from firmware_host.detectors import make_detector
    from firmware_host.photos import predict_images, write_rows
    from firmware_host.predictor import AgeGenderModel
    from firmware_host.progress import track

    truth = read_labels(labels, skip_bad_labels) if labels else None
    age_model = AgeGenderModel(resolve_tflite(model), delegate, threads, delegate_library, device)
    finder = make_detector(detector, detector_model, threads, detect_size=detect_size)
    rows, timer, unreadable = predict_images(images, age_model, finder, out, min_face,
                                             progress=lambda items, total: track(items, "predicting", total))
    write_rows(rows, out)
    found = {r["file"] for r in rows if r["face"] >= 0}
    typer.echo(f"{len(found)} of {len({r['file'] for r in rows})} images with a face, "
               f"{sum(r['face'] >= 0 for r in rows)} "
               f"faces ({finder.name}); unreadable: {len(unreadable)}")
    typer.echo("p50 ms: " + ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in timer.summary().items() if v.get("count")))
    if truth is not None:
        _report_accuracy(rows, truth, out)
    typer.echo(f"wrote {out}/faces.csv and faces.json")


@app.command()
def serve(
    model: str | None = ModelOpt,
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
    """Age and gender over HTTP: POST /predict (an image), GET / (a page for photos and the webcam), /health, /info."""
    import logging

    from firmware_host.serve import LOG, ServeOptions
    from firmware_host.serve import serve as run_server

    handler = logging.StreamHandler(sys.stderr)  # one timestamped line per request, beside main()'s warnings
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False

    from edge_age.members import resolve_tflite

    run_server(ServeOptions(model=resolve_tflite(model), host=host, port=port, threads=threads, queue=queue,
                            max_body=int(max_body * 2**20), timeout=timeout, detector=detector,
                            detector_model=detector_model, delegate=delegate, library=delegate_library, device=device))


@app.command("run-table")
def run_table(
    reports: list[Path] = typer.Argument(..., help="run_report.json files from 'edge-age run'."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the table to this Markdown file."),
) -> None:
    """Compare runs: settings, frames per second and per-stage p50 of each run_report.json, as a Markdown table."""
    from edge_age.report.run_table import run_table as table_of
    from firmware_host import atomic

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


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise EdgeAgeError(f"--threads takes thread counts separated by commas, such as 1,2,4, not {text!r}")
    return list(dict.fromkeys(counts))


@app.command()
def bench(
    models: list[str] = typer.Argument(..., help=".tflite files, ONNX baselines (.onnx with its preprocessing .json "
                                                 "beside it, or that .json), folders of them, or members' names "
                                                 "(their int8-qat files)."),
    out: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Folder for bench.json, bench.md, bench.html."),
    data: Path | None = typer.Option(None, "--data", help="Face crops for accuracy (with --split or --labels, "
                                                             "default $EDGE_AGE_DATA); without all three: latency "
                                                             "only."),
    split: Path | None = typer.Option(None, help="Split CSV: accuracy on one side of it."),
    subset: str = typer.Option("test", help="train, val or test (with --split)."),
    labels: Path | None = typer.Option(None, help="CSV with columns file, age[, gender], paths relative to DATA."),
    limit: int | None = typer.Option(None, min=1, help="Score at most this many faces, spread over the set."),
    delegate: list[str] = typer.Option(["cpu"], help="cpu (XNNPACK), gpu or edgetpu; repeat or comma-separate."),
    threads: str = typer.Option("1", help="Thread counts, comma-separated, e.g. 1,2,4."),
    runs: int = typer.Option(100, min=1, help="Timed inferences per configuration."),
    warmup: int = typer.Option(10, min=0, help="Untimed inferences before them."),
    rounds: int | None = typer.Option(None, min=1, help="Measure every configuration this many times, interleaved, "
                                         "samples pooled [default: 3; with --duration: 1]."),
    duration: float | None = typer.Option(None, help="Keep each configuration running this many seconds (instead "
                                             "of --runs): latency per window, temperature and CPU clock over time."),
    window: float = typer.Option(WINDOW_S, help="Seconds per latency window (and between temperature samples)."),
    name: str | None = typer.Option(None, help="This device's name in reports (default: board model, else host name)."),
    delegate_library: str | None = DelegateLibraryOpt,
    device: str | None = DeviceOpt,
    skip_bad_labels: bool = SkipBadLabelsOpt,
) -> None:
    """Accuracy against latency: each model on each delegate and thread count, batch 1, in a fresh process each."""
    from edge_age.bench.jobs import Timing
    from edge_age.bench.run import FaceSource, run_bench
    from edge_age.members import resolve_tflite
    from edge_age.report.bench_page import bench_table
    from edge_age.report.sustained import has_windows, verdict_lines
    from firmware_host.windows import check_seconds

    models = [resolve_tflite(m) for m in models]

    if split and labels:
        raise EdgeAgeError("give --split or --labels, not both")
    if limit and not (data or split or labels):
        raise EdgeAgeError("--limit counts the faces scored for accuracy: give --data (with --split or --labels)")
    delegates = list(dict.fromkeys(d.strip() for item in delegate for d in item.split(",") if d.strip()))
    faces = (FaceSource(data, split=split, subset=subset, labels=labels, limit=limit, skip_bad_labels=skip_bad_labels)
             if data or split or labels else None)
    timing = Timing(runs, warmup, check_seconds(duration, "--duration"), check_seconds(window, "--window"))
    try:
        result = run_bench(models, out, delegates, _thread_counts(threads), timing=timing, faces=faces, name=name,
                           library=delegate_library, device=device, rounds=rounds or (1 if duration else 3))
    except KeyboardInterrupt:
        typer.echo(f"edge-age: bench interrupted; what it measured is in {out}/bench.json, bench.md, bench.html",
                   err=True)
        raise
    typer.echo(bench_table(result))
    if has_windows(result):
        typer.echo("\n".join(verdict_lines([(f"{r['model']} {r['delegate']} "
                                             f"×{r['threads']}", r) for r in result["latency"]],
                                            result["thermal"])))
    for s in result["skipped"]:
        typer.echo(f"not measured: {s['model']} on {s['delegate']}: {s['reason']}", err=True)
    typer.echo(f"wrote {out}/bench.html, bench.md and bench.json in {result['seconds']:.0f} s")


@app.command()
def models(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list (name, files: target -> path, figures)."),
) -> None:
    """The bundled model family: each member's size, accuracy on the test split and latency; usable by name."""
    from edge_age.members import DEFAULT_MEMBER, members
    from edge_age.report.page import md_table

    family = members()
    if json_out:
        typer.echo(json.dumps([m.summary() for m in family], indent=1))
        return
    rows = []
    for m in family:
        f, t = m.facts, m.facts.get("targets", {}).get("int8-qat", {})
        p50 = f.get("latency_ms_p50", {}).get("1", t.get("latency_ms_p50", float("nan")))
        rows.append([m.name + (" (default)" if m.name == DEFAULT_MEMBER else ""), f["arch"], f["input_size"],
                     f"{f['params'] / 1e6:.2f} M", f"{f['macs'] / 1e6:.0f} M", f"{t.get('size_kb', 0):.0f} KB",
                     f"{t.get('mae', float('nan')):.2f}", f"{t.get('cs5', float('nan')):.1%}",
                     f"{t.get('gender_accuracy', float('nan')):.1%}", f"{p50:.2f}"])
    typer.echo(md_table(["name", "architecture", "input", "params", "MACs", "int8 file", "MAE", "CS@5", "gender",
                         "p50 ms (1 thread)"], rows))
    typer.echo("Figures: int8-qat file on the test split of the build machine; use a name wherever a model goes, "
               "e.g. 'edge-age run -m n'.")


@app.command(hidden=True)
def bundle(
    name: str = typer.Argument(..., help="The member's name (m, s or n)."),
    run_dir: Path = typer.Option(..., "--run", help="Its training run folder."),
    converted: Path = typer.Option(..., "--converted", help="Its 'edge-age convert --split' output folder."),
    copy_keras: bool = typer.Option(False, help="Copy the Keras float and QAT models into the package too."),
    bench_json: Path | None = typer.Option(None, "--bench", help="Take the CPU latency from this bench.json."),
) -> None:
    """Install a trained, converted member into the package's family folder (maintainers: 'make family')."""
    from edge_age.train.bundle import bundle_member

    facts = bundle_member(name, run=run_dir, converted=converted, copy_keras=copy_keras, bench=bench_json)
    typer.echo(f"bundled {name}: {', '.join(facts['files'])}")


@app.command()
def report(
    benches: list[Path] = typer.Argument(..., help="bench.json files written by 'edge-age bench', one per device."),
    out: Path = typer.Option(Path("runs/report"), "--out", "-o", help="Folder for report.html and report.md."),
) -> None:
    """Merge benches from several devices: per model, accuracy and latency on each device, each device's Pareto
    front."""
    from edge_age.bench.merge import merge_benches

    typer.echo(merge_benches(benches, out))
    typer.echo(f"wrote {out}/report.html and report.md")


def main() -> None:
    """Entry point: user errors (and any failed file operation, such as a full disk) become one line on
    stderr and exit code 2; warnings of the library's loggers show as ``edge-age: warning: ...``."""
    import logging

    from firmware_host.errors import user_message

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("edge-age: warning: %(message)s"))
    for name in ("edge_age", "firmware_host"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        app()
    except (EdgeAgeError, OSError) as exc:
        typer.echo(f"edge-age: error: {user_message(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("edge-age: interrupted", err=True)
        sys.exit(130)
