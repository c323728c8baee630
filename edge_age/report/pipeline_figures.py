"""The tables of ``make pipeline-figures``, from the folder it fills, into ``pipeline.md`` there.

    python -m edge_age.report.pipeline_figures runs/pipeline

Reads ``runs/*/run_report.json`` (one per detector, detect size, detect every and face count),
``overlap/*/run_report.json`` (annotated video written with and without ``--overlap``), ``raw/*.json``
(``evaluate --detect`` on raw photos per detector and detect size) and ``bench/bench.json``
(``bench --duration``). Each table says the command that made its rows.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from edge_age.report.page import md_table
from edge_age.report.run_table import read_report, run_table
from edge_age.report.sustained import row_drift, throttling_line
from firmware_host.detect.detectors import DETECTORS
from firmware_host.files import atomic
from firmware_host.pipeline.defaults import DETECT_EVERY, DETECT_SIZE
from firmware_host.pipeline.windows import DRIFT

RUN = ("edge-age run -m {model} -s {source} --detector DETECTOR --detect-size SIZE --detect-every EVERY "
       "--threads {threads} -o {folder}/runs/NAME")


def _order(r: dict) -> tuple:
    """Detectors in the CLI's order; the full frame first, then smaller detect sizes; then detect every."""
    return (DETECTORS.index(r["detector"]), -(r.get("detect_size") or 1e9), r.get("detect_every", 1))


def _faces(report: dict) -> str:
    return Path(report["source"]).stem


def fps_sections(folder: Path) -> list[str]:
    """Per video (face count): every run's settings, fps and stage p50; then the speed-up of the default settings."""
    found = [(p, read_report(p)) for p in sorted(folder.glob("runs/*/run_report.json"))]
    parts, summary = [], []
    for video in sorted({_faces(r) for _, r in found}):
        runs = sorted(((p, r) for p, r in found if _faces(r) == video), key=lambda pr: _order(pr[1]))
        first = runs[0][1]
        command = RUN.format(model=first["model"], source=first["source"], threads=first["threads"], folder=folder)
        parts.append(f"## fps and per-stage p50: {video}\n\n`{command}`\n\n" + run_table([p for p, _ in runs]))
        for detector in dict.fromkeys(r["detector"] for _, r in runs):
            by = {(r["detect_size"], r["detect_every"]): r for _, r in runs if r["detector"] == detector}
            base, default = by.get((0, 1)), by.get((DETECT_SIZE, DETECT_EVERY))
            if base and default:
                summary.append([video, detector, f"{base['fps']:.1f}", f"{default['fps']:.1f}",
                                f"{default['fps'] / base['fps']:.2f}",
                                f"{default['frames_with_faces'] / max(default['frames'], 1):.1%}"])
    if summary:
        parts.append(f"## Default settings against full-frame detection on every frame\n\n"
                     f"Default: `--detect-size {DETECT_SIZE} --detect-every {DETECT_EVERY}`.\n\n"
                     + md_table(["video", "detector", "fps at full/1", f"fps at {DETECT_SIZE}/{DETECT_EVERY}", "ratio",
                                 "frames with a face (default)"], summary))
    return parts


def overlap_section(folder: Path) -> list[str]:
    """The annotated-video runs with and without --overlap."""
    paths = sorted(folder.glob("overlap/*/run_report.json"))
    if not paths:
        return []
    return ["## Drawing and encoding overlapped with inference\n\n"
            "`edge-age run ... --video annotated.avi [--overlap]` at the default settings; "
            "with --overlap, `draw` is the hand-over to the second thread.\n\n" + run_table(paths)]


def raw_section(folder: Path) -> list[str]:
    """MAE on raw photos per detector and detect size, with the difference to the full photo."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("raw/*.json"))]
    if not results:
        return []
    results.sort(key=lambda r: (DETECTORS.index(r["detection"]["detector"]), -(r["detection"]["detect_size"] or 1e9)))
    full = {r["detection"]["detector"]: r for r in results if not r["detection"]["detect_size"]}
    rows = []
    for r in results:
        d, base = r["detection"], full.get(r["detection"]["detector"])
        rows.append([d["detector"], d["detect_size"] or "full", d["photos"], d["faces_found"], f"{r['mae']:.3f}",
                     f"{r['mae'] - base['mae']:+.3f}" if base else "-",
                     d["faces_found"] - base["detection"]["faces_found"] if base else "-",
                     f"{r['cs5']:.1%}", f"{r['gender_accuracy']:.1%}" if "gender_accuracy" in r else "-"])
    model = results[0]["model"]
    return ["## Accuracy on raw photos\n\n"
            f"`edge-age evaluate {model} --data {folder}/raw_test --labels {folder}/raw_test/labels.csv --detect "
            "--detector DETECTOR --detect-size SIZE` (photos are single frames: --detect-every does not apply).\n\n"
            + md_table(["detector", "detect px", "photos", "with a face", "MAE", "Δ MAE to full", "Δ faces to full",
                        "CS@5", "gender"], rows)]


def bench_section(folder: Path) -> list[str]:
    """First and last window p50 of each configuration of the sustained bench, and throttling."""
    path = folder / "bench" / "bench.json"
    if not path.is_file():
        return []
    bench = json.loads(path.read_text())
    rows = []
    for row in bench["latency"]:
        d = row_drift(row)
        rows.append([row["model"], row["threads"], len(row.get("windows", [])), row["runs"],
                     *((f"{d['first']:.3f}", f"{d['last']:.3f}", f"{d['change']:+.1%}", "yes" if d["drifted"] else "no")
                       if d else ("-",) * 4)])
    settings = bench["settings"]
    models = " ".join(m["file"] for m in bench["models"])
    return [f"## Latency over {settings.get('duration_s')} s\n\n`edge-age bench {models} --duration "
            f"{settings.get('duration_s')} --window {settings.get('window_s')} --threads "
            f"{','.join(map(str, settings['threads']))} --out {path.parent}` on {bench['device']['name']} "
            f"({bench['device']['cpu']}). {throttling_line(bench.get('thermal', [])).capitalize()}.\n\n"
            + md_table(["model", "threads", "windows", "runs", "first p50 ms", "last p50 ms", "change",
                        f"drift > {DRIFT:.0%}"], rows)]


def write_figures(folder: Path) -> Path:
    """``pipeline.md`` in ``folder`` with every table found there."""
    folder = Path(folder)
    parts = fps_sections(folder) + overlap_section(folder) + raw_section(folder) + bench_section(folder)
    return atomic.write_text(folder / "pipeline.md", "# Pipeline figures\n\n" + "\n".join(parts))


if __name__ == "__main__":
    print(write_figures(Path(sys.argv[1])).read_text())
