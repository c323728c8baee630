"""The ``edge-age`` command line. Heavy libraries (TensorFlow, matplotlib) load inside commands."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from firmware_host.errors import EdgeAgeError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Face age and gender estimation from training to small devices.")
data_app = typer.Typer(no_args_is_help=True, help="Read, audit and split UTKFace-style face crops.")
app.add_typer(data_app, name="data")

DataArg = typer.Argument(None, help="Folder or .tar/.tar.gz/.zip of face crops [default: $EDGE_AGE_DATA].",
                         show_default=False)


@data_app.command("audit")
def data_audit(
    data: Optional[Path] = DataArg,
    out: Path = typer.Option(Path("runs/audit"), "--out", "-o", help="Folder for the report, plots and audit.json."),
    split: Optional[Path] = typer.Option(None, help="A split CSV: adds the age histogram of each side."),
    size: int = typer.Option(64, min=16, max=512, help="Image size of the decoded-image cache."),
    cache: bool = typer.Option(True, help="Use the decoded-image cache."),
) -> None:
    """Count, check and plot a dataset: names, unreadable files, duplicates, conflicting labels."""
    from edge_age.data.audit import audit_faces
    from edge_age.data.audit_report import write_audit_report
    from edge_age.data.faceset import load_faces
    from edge_age.data.split import read_split

    start = time.perf_counter()
    faces = load_faces(data, size=size, use_cache=cache)
    split_rows = read_split(split) if split else None
    if split_rows:
        missing = {r.file for r in split_rows.rows} - set(faces.names)
        if missing:
            raise EdgeAgeError(f"split file {split} does not match {faces.root}: {len(missing)} of its files are not there")
    summary = write_audit_report(audit_faces(faces), out, split_rows)
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    typer.echo(json.dumps(counts))
    typer.echo(f"wrote {out}/report.html, report.md, audit.json in {time.perf_counter() - start:.1f} s"
               f" ({'cached' if faces.from_cache else 'decoded'} images)")


@data_app.command("split")
def data_split(
    data: Optional[Path] = DataArg,
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
    write_split(result, out)
    atomic.write_text(out.with_suffix(".json"), json.dumps(meta, indent=1))
    sizes = ", ".join(f"{s} {v['images']:,}" for s, v in report["sides"].items())
    typer.echo(f"wrote {out}: {sizes}; policy {dict(result.policy)}")
    if check:
        _print_check(report)


@data_app.command("check")
def data_check(split: Path = typer.Argument(..., help="A split CSV written by 'edge-age data split'.")) -> None:
    """Print each side's size and age/gender distribution and the largest difference between sides."""
    from edge_age.data.split import check_split, read_split

    _print_check(check_split(read_split(split)))


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


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except EdgeAgeError as exc:
        typer.echo(f"edge-age: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("edge-age: interrupted", err=True)
        sys.exit(130)
