"""``edge-age convert``: every TFLite target of a model, validated and reported."""
from __future__ import annotations

from pathlib import Path

import typer

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.paths import data_root


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
    bias_correction: bool = typer.Option(True, "--bias-correction/--no-bias-correction",
                                         help="int8 and int16x8: add each weighted layer's mean int8-weight error, "
                                              "measured on the calibration images, to its bias."),
    fit_decoding: bool = typer.Option(False, "--fit-decoding", help="Fit each 8-bit file's age decoding (as "
                                      "fit-correction does) on its own outputs on the split's validation side, "
                                      "instead of carrying device.json's. Needs --split."),
) -> None:
    """Convert to TFLite (float32, float16, dynamic, int8, int8-qat, edgetpu; int16x8, int8-mixed on request),
    validate each file, report per-layer quantization error."""
    from converters.targets import TARGETS
    from edge_age.conversion import convert as run_convert
    from edge_age.members import resolve_keras
    from edge_age.report.convert_page import table

    model = resolve_keras(model)  # a member's QAT twin is the qat.h5 beside its float model
    data = data_root(data)
    if calib_draw not in ("stratified", "random"):
        raise EdgeAgeError(f"--calib-draw must be stratified or random, not {calib_draw!r}")
    names = list(TARGETS) if targets.strip() == "all" else [t.strip() for t in targets.split(",") if t.strip()]
    with atomic.locked(out):  # a second convert into the same folder stops at once: files of two never mix
        report = run_convert(model, names, out, data, split=split, calib=calib, qat=qat, threshold=threshold,
                             stratified=calib_draw == "stratified", debug_images=debug_images, budget=budget,
                             max_float=max_float, int16x8_faces=int16x8_faces, bias_correction=bias_correction,
                             fit_decoding=fit_decoding)
    typer.echo(table(report))
    for row in report["targets"]:
        if row["reason"].startswith("over budget"):
            typer.echo(f"{row['target']}: {row['reason']}")
    typer.echo(f"wrote {out}/convert_report.md, convert_report.html and convert_report.json")
