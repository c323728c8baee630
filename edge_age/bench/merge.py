"""``edge-age report``: benches from several devices merged into one table and one page.

Per model: its size and accuracy, and its fastest latency on each device, starred where it is on
that device's Pareto front (computed over that device's own measurements).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from edge_age.report import bench_plots
from edge_age.report.bench_page import (
    FRONT_NOTE,
    NO_PLOTS,
    Measurement,
    accuracy_cells,
    breakdown_sections,
    can_plot,
    coverage_cell,
    fmt,
    label,
    load_bench,
    measurements,
    short_names,
    thermal_text,
    write_pages,
)
from edge_age.report.page import Section, md_table
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic

RUNTIMES = ("ai-edge-litert", "tflite-runtime", "onnxruntime")


def device_names(benches: list[dict]) -> list[str]:
    """Each bench's device name, numbered where two benches share one."""
    names, seen = [], Counter()
    for bench in benches:
        base = bench["device"]["name"]
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return names


def _accuracy(benches: list[dict], model: str) -> dict | None:
    """The model's accuracy from the first bench that measured it (on the CPU if it ran there)."""
    for bench in benches:
        entry = next((m for m in bench["models"] if m["name"] == model), None)
        if entry and entry["accuracy"]:
            return entry["accuracy"].get("cpu") or next(iter(entry["accuracy"].values()))
    return None


def _device_cell(found: list[Measurement], model: str) -> str:
    mine = [m for m in found if m.model["name"] == model]
    if not mine:
        return "-"
    best = min(mine, key=lambda m: m.p50)
    star = " ★" if any(m.front for m in mine) else ""
    return f"{best.p50:.3f} ({best.row['delegate']} ×{best.row['threads']}){star}"


def _notes(paths: list[Path], benches: list[dict], names: list[str], models: list[str]) -> list[str]:
    notes = [(f"{FRONT_NOTE} ★: on that device's front. Each device cell is the model's fastest configuration there "
              "(p50 ms, delegate ×threads); MAE comes from the first device that measured it, and places the "
              "measurements of devices that measured no accuracy themselves.")]
    for path, bench, name in zip(paths, benches, names):
        if bench["status"] != "complete":
            notes.append(f"{name} ({path}) is {bench['status']}: only what it measured before stopping is shown.")
    faces = {name: b["settings"].get("faces") for name, b in zip(names, benches) if b["settings"].get("faces")}
    if len(set(faces.values())) > 1:
        notes.append("Accuracy was measured on different faces: "
                     "" + "; ".join(f"{k}: {v}" for k, v in faces.items()) + ".")
    for model in models:
        hashes = {m["sha256"] for b in benches for m in b["models"] if m["name"] == model}
        if len(hashes) > 1:
            notes.append(f"{model} is not the same file on every device (its SHA-256 differs).")
    return notes


def merge_benches(paths: list[Path], out: Path) -> str:
    """Write report.md and report.html (and plots) for the benches in ``paths``, replacing the previous
    report as one set; return the per-model table."""
    benches = [load_bench(p) for p in paths]
    with atomic.file_set(out, "report") as staging:
        return _write_merged(paths, benches, staging)


def _write_merged(paths: list[Path], benches: list[dict], out: Path) -> str:
    names = device_names(benches)
    models = list(dict.fromkeys(m["name"] for b in benches for m in b["models"]))
    if not models:
        raise EdgeAgeError("the bench files hold no model")
    short = short_names(models)
    sizes = {m["name"]: m["size_bytes"] for b in benches for m in b["models"]}
    accuracy = {model: _accuracy(benches, model) for model in models}
    found = {name: measurements(b, {m: acc for m, acc in accuracy.items() if acc}) for name, b in zip(names, benches)}

    header = ["model", "KB", "MAE", "CS@5", "ε-error", "gender", *[f"{n} p50 ms" for n in names]]
    rows = [[model, f"{sizes[model] / 1024:.0f}", *accuracy_cells(accuracy[model]),
             *[_device_cell(found[n], model) for n in names]] for model in models]
    devices = [[n, b["device"].get("cpu"), b["device"].get("cores"), b["device"].get("board") or "-",
                b["device"].get("os"), b["device"].get("python"),
                ", ".join(f"{k} {v}" for k, v in b["device"].get("packages", {}).items() if k in RUNTIMES) or "-",
                f"{b['status']}, "
                f"{b['started']}", b["settings"].get("faces_count") or "-", thermal_text(b["device"]) or "-"]
               for n, b in zip(names, benches)]
    detail = [[n, m.model["name"], m.row["delegate"], m.row["threads"], f"{m.p50:.3f}",
               f"{m.row['latency_ms']['p90']:.3f}", f"{m.row['latency_ms']['p99']:.3f}",
               fmt(m.row.get("peak_rss_mb"), ".0f"), coverage_cell(m.row.get("coverage")), fmt(m.mae, ".2f"),
               "★" if m.front else ""] for n in names for m in found[n]]
    sections = [
        Section("Devices", "", ["device", "CPU", "cores", "board", "OS", "Python", "runtime", "bench", "faces",
                                "thermal (before → after)"], devices),
        Section("Models across devices", " ".join(_notes(paths, benches, names, models)), header, rows),
        Section("Every measurement", "", ["device", "model", "delegate", "threads", "p50 ms", "p90 ms", "p99 ms",
                                          "peak MB", "delegated ops", "MAE", "front"], detail),
        *breakdown_sections({short[m]: acc for m, acc in accuracy.items() if acc}),
    ]
    if can_plot():
        series = {n: [{"label": label(m, short, False), "latency": m.p50, "mae": m.mae, "front": m.front}
                      for m in found[n] if m.mae is not None] for n in names}
        plots = []
        if any(series.values()):
            plots.append(bench_plots.tradeoff({n: s for n, s in series.items() if s}, out / "tradeoff.png",
                                              "Accuracy against latency on each device"))
        curves = {short[m]: acc["error_by_age"] for m, acc in accuracy.items() if acc}
        if curves:
            plots.append(bench_plots.error_by_age_lines(curves, out / "error_by_age.png"))
        sections.append(Section("Plots", "", plots=plots))
    else:
        sections.append(Section("Plots", NO_PLOTS))
    write_pages(out, "report", f"edge-age report: {', '.join(names)}", sections)
    return md_table(header, rows)
