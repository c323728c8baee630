"""``edge-age evaluate``: accuracy of a model on labelled faces or raw photos."""
from __future__ import annotations

from pathlib import Path

import typer

from edge_age.cli.options import DETECTOR_HELP, SkipBadLabelsOpt
from firmware_host.errors import EdgeAgeError
from firmware_host.files.jsonio import write_json
from firmware_host.files.paths import data_root
from firmware_host.pipeline.defaults import DETECT_SIZE


def evaluate(
    model: str = typer.Argument(..., help="A .keras/.h5 (float or QAT) or .tflite model, or a member's name "
                                          "(its int8-qat file)."),
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    split: Path | None = typer.Option(None, help="Split CSV: evaluate on one side of it."),
    subset: str = typer.Option("test", help="train, val or test (with --split)."),
    labels: Path | None = typer.Option(None, help="CSV with columns file, age[, gender], paths relative to DATA."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics and breakdowns here."),
    per_face: Path | None = typer.Option(None, "--per-face", help="Write each face's labels and estimates here (CSV: "
                                          "file, true_age, true_gender, age, female)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the evaluation page: report.html "
                                       "(self-contained), report.md and the plots."),
    detect: bool = typer.Option(False, "--detect", help="DATA holds raw photos: detect and align faces first (needs "
                                                        "--labels)."),
    detector: str = typer.Option("auto", help=f"With --detect: {DETECTOR_HELP}"),
    detector_model: Path | None = typer.Option(None, help="With --detect: the detector's model file."),
    detect_size: int = typer.Option(DETECT_SIZE, help="With --detect: longer side, in pixels, of the photo the "
                                    "detector sees (0 = the full photo); faces are cropped at full resolution."),
    chip_resolution: int | None = typer.Option(None, min=8, help="With --detect: crop faces at this many pixels "
                                                  "first, as the training chips [default: from the .tflite sidecar]."),
    skip_bad_labels: bool = SkipBadLabelsOpt,
) -> None:
    """Accuracy of a model: MAE, CS@5, epsilon error, gender accuracy and AUC, breakdowns; --out adds a page."""
    from edge_age.eval.evaluation import evaluate_file, write_per_face
    from edge_age.members import resolve_tflite

    model = resolve_tflite(model)
    if split and labels:
        raise EdgeAgeError("give --split or --labels, not both")
    if out:
        from edge_age.report.page import pyplot
        pyplot()  # fail before the model runs when matplotlib is missing
    finder = None
    if detect:
        from firmware_host.detect.detectors import make_detector
        if not labels or not data:
            raise EdgeAgeError("--detect needs --data (the photos' folder) and --labels (file,age[,gender])")
        finder = make_detector(detector, detector_model, detect_size=detect_size)
    result, (pred_age, pred_gender, faces) = evaluate_file(model, data, split, subset, labels, detector=finder,
                                                            resolution=chip_resolution, skip_bad_labels=skip_bad_labels)
    if json_out:
        write_json(json_out, result)
    if per_face:
        write_per_face(per_face, pred_age, pred_gender, faces)
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


def fit_correction(
    model: Path = typer.Argument(..., help="A .keras/.h5 model (the decoding goes into the device.json beside it, "
                                           "for 'convert' and 'bundle' to carry into every sidecar) or a .tflite "
                                           "(into its own sidecar)."),
    split: Path = typer.Option(..., help="Split CSV: the fit uses its validation side only."),
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    mirror: bool = typer.Option(False, "--mirror", help="Average each face's outputs with its mirror image's "
                                "(the model runs twice per face), and fit on those."),
) -> None:
    """Fit how ages are read from the model on the validation side: mean or median of the distribution, then a
    monotone map; every path that decodes an age applies it."""
    from edge_age.eval.correction import describe_fit, fit_model_file

    decoding, written = fit_model_file(model, data, split, mirror=mirror)
    typer.echo(f"{model.name}: {describe_fit(decoding)}; wrote {written}")
