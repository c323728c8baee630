"""``edge-age data``: audit, split, check, calibration manifest, raw-like photos and videos."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from edge_age.cli.options import ChipsArg, DataArg
from firmware_host.errors import EdgeAgeError
from firmware_host.files.jsonio import to_json, write_json
from firmware_host.files.paths import data_root

data_app = typer.Typer(no_args_is_help=True, help="Read, audit and split UTKFace-style face crops.")


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
    from firmware_host.files import atomic

    faces = load_faces(data)
    result = make_split(audit_faces(faces), (train, val, test), seed, age_tolerance)
    report = check_split(result)
    meta = {"data": str(faces.root), "data_fingerprint": faces.fingerprint, "seed": seed,
            "fractions": [train, val, test], "age_tolerance": age_tolerance, "policy": dict(result.policy), **report}
    with atomic.file_set(out.parent, out.stem) as staging:  # the CSV and its .json replace the old pair together
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

    path = make_video(_chips(data, faces, seed, split, subset), out, frames, fps, size=(width, height), seed=seed,
                      churn=churn)
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
