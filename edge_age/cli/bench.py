"""``edge-age bench`` and ``report``: latency and accuracy of models, and benches of several
devices merged."""
from __future__ import annotations

from pathlib import Path

import typer

from edge_age.cli.options import DelegateLibraryOpt, DeviceOpt, SkipBadLabelsOpt
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.pipeline.defaults import WINDOW_S


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise EdgeAgeError(f"--threads takes thread counts separated by commas, such as 1,2,4, not {text!r}")
    return list(dict.fromkeys(counts))


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
    from firmware_host.pipeline.windows import check_seconds

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
        with atomic.locked(out):  # a second bench into the same folder stops at once
            result = run_bench(models, out, delegates, _thread_counts(threads), timing=timing, faces=faces,
                               name=name, library=delegate_library, device=device,
                               rounds=rounds or (1 if duration else 3))
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


def report(
    benches: list[Path] = typer.Argument(..., help="bench.json files written by 'edge-age bench', one per device."),
    out: Path = typer.Option(Path("runs/report"), "--out", "-o", help="Folder for report.html and report.md."),
) -> None:
    """Merge benches from several devices: per model, accuracy and latency on each device, each device's Pareto
    front."""
    from edge_age.bench.merge import merge_benches

    typer.echo(merge_benches(benches, out))
    typer.echo(f"wrote {out}/report.html and report.md")


def members_table(
    teacher: list[str] = typer.Option([], metavar="NAME=RUN",
                                      help="A teacher network: NAME=RUN (its 'edge-age train' folder); repeat."),
    member: list[str] = typer.Option([], metavar="NAME=RUN[:CONVERTED]",
                                     help="A member: NAME=RUN[:CONVERTED] (its 'edge-age train' folder and its "
                                          "'edge-age convert --split' folder); repeat."),
    file: list[str] = typer.Option([], metavar="NAME=TFLITE", help="A model file with no run folder, its row from "
                                                                   "the bench alone; repeat."),
    bench_json: Path | None = typer.Option(None, "--bench", help="The bench.json of one 'edge-age bench' run over "
                                                                  "every member's int8-qat file and each --file."),
    out: Path = typer.Option(Path("runs/members-table"), "--out", "-o",
                             help="Folder for members_table.md and members_table.json."),
) -> None:
    """The table of teacher networks and members: architecture, input, params, MACs, epochs, train minutes, test
    figures of the float, QAT, int8-qat and int8 models, and the int8-qat file's CPU p50 per thread count."""
    from edge_age.bench.members_table import parse_row, write_members_table

    rows = [parse_row(text, role) for role, texts in (("teacher", teacher), ("member", member), ("file", file))
            for text in texts]
    typer.echo(write_members_table(rows, out, bench=bench_json).read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}/members_table.md and members_table.json")
