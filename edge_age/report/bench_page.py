"""bench.json (schema and the checks on reading one), the Pareto front, and the bench's Markdown and HTML pages."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge_age.report import bench_plots
from edge_age.report import sustained as bench_sustained
from edge_age.report.page import Section, md_table, pyplot, to_html, to_markdown
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import check_schema, write_json
from firmware_host.pipeline.windows import DRIFT

SCHEMA = "edge-age-bench"
SCHEMA_VERSION = 2
READS = (1, 2)  # version 1 lacks the windows and the thermal series, which the pages then leave out
SCHEMA_FILE = Path(__file__).with_name("bench.schema.json")  # JSON Schema of bench.json, for other tools
REQUIRED_KEYS = ("status", "device", "settings", "models", "latency", "skipped")
NO_PLOTS = "No plots: matplotlib is not installed here (pip install 'edge-age[report]')."
FRONT_NOTE = ("front: on the Pareto front of p50 latency and MAE (no other measurement is at least as fast and "
              "as accurate, and better on one).")


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (latency, error) points, lower being better on both: whether each is on the Pareto front,
    that is, no other point is at least as good on both and strictly better on one."""
    return [not any(q[0] <= p[0] and q[1] <= p[1] and (q[0] < p[0] or q[1] < p[1]) for q in points) for p in points]


def load_bench(path: str | Path) -> dict:
    """A bench.json of this schema version, or a one-line error naming the file."""
    path = Path(path)
    hint = "give a bench.json written by 'edge-age bench'"
    try:
        bench = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgeAgeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EdgeAgeError(f"{path} is not a bench file: it is not JSON ({hint})") from None
    if not isinstance(bench, dict) or bench.get("schema") != SCHEMA:
        raise EdgeAgeError(f"{path} is not a bench file: it has no \"schema\": \"{SCHEMA}\" ({hint})")
    if bench.get("schema_version") not in READS:
        raise EdgeAgeError(f"{path} is a bench file of schema version {bench.get('schema_version')!r}; this edge-age "
                           f"reads versions {', '.join(map(str, READS))}: bench again, or use the edge-age that wrote "
                           "it")
    missing = [k for k in REQUIRED_KEYS if k not in bench]
    if missing:
        raise EdgeAgeError(f"{path} is a damaged bench file: it has no {', '.join(missing)}")
    if bench["schema_version"] == SCHEMA_VERSION:
        check_schema(bench, SCHEMA_FILE, f"{path} is a damaged bench file")
    try:  # what the report reads
        names = {m["name"]: (m["size_bytes"], m["sha256"], dict(m["accuracy"])) for m in bench["models"]}
        for row in bench["latency"]:
            names[row["model"]], row["delegate"], row["threads"], row["latency_ms"]["p90"], row["samples_ms"]
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeAgeError(f"{path} is a damaged bench file: bad or missing {exc}") from None
    return bench


@dataclass
class Measurement:
    """One latency row of a bench, joined with its model and that model's accuracy on the row's delegate."""

    model: dict
    row: dict
    accuracy: dict | None
    front: bool = False

    @property
    def p50(self) -> float:
        return self.row["latency_ms"]["p50"]

    @property
    def mae(self) -> float | None:
        return self.accuracy["mae"] if self.accuracy else None


def measurements(bench: dict, elsewhere: dict[str, dict] | None = None) -> list[Measurement]:
    """Every latency row with its accuracy, the Pareto front marked among those with an accuracy.

    ``elsewhere`` gives a model's accuracy where this bench did not measure it (a device without the data).
    """
    models = {m["name"]: m for m in bench["models"]}
    found = [Measurement(models[r["model"]], r, models[r["model"]]["accuracy"].get(r["delegate"])
                         or (elsewhere or {}).get(r["model"])) for r in bench["latency"]]
    scored = [m for m in found if m.mae is not None]
    for m, front in zip(scored, pareto_front([(m.p50, m.mae) for m in scored])):
        m.front = front
    return found


def short_names(names: list[str]) -> dict[str, str]:
    """Names without their common prefix up to a ``_`` or ``-`` (``age_gender_int8`` -> ``int8``)."""
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    cut = max(prefix.rfind("_"), prefix.rfind("-")) + 1
    return {n: n[cut:] or n for n in names}


def label(m: Measurement, names: dict[str, str], delegates: bool) -> str:
    return f"{names[m.model['name']]}{' ' + m.row['delegate'] if delegates else ''} ×{m.row['threads']}"


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def coverage_cell(coverage: dict | None) -> str:
    return "-" if not coverage else f"{coverage['delegated']}/{coverage['ops']}"


def accuracy_cells(acc: dict | None) -> list[str]:
    acc = acc or {}
    return [fmt(acc.get("mae"), ".2f"), fmt(acc.get("cs5"), ".1%"), fmt(acc.get("epsilon_error"), ".3f"),
            fmt(acc.get("gender_accuracy"), ".1%")]


def thermal_text(device: dict) -> str:
    """Temperature and throttling before and after the bench, where the device reports them (a Pi does)."""
    states = [device.get("thermal_before") or {}, device.get("thermal_after") or {}]
    parts = []
    if any(s.get("temperature_c") is not None for s in states):
        parts.append("temperature " + " → ".join(fmt(s.get("temperature_c"), ".1f") + " °C" for s in states))
    if any(s.get("throttling") for s in states):
        parts.append("throttling " + " → ".join((", ".join(s["throttling"]["flags"]) or "none")
                                                 if s.get("throttling") else "-" for s in states))
    return "; ".join(parts)


def device_summary(device: dict) -> str:
    """CPU, board, OS, Python, package versions and, where reported, temperature and throttling."""
    packages = ", ".join(f"{k} {v}" for k, v in device.get("packages", {}).items())
    thermal = thermal_text(device)
    parts = [f"{device.get('cpu')} ({device.get('cores')} cores)", device.get("board"), device.get("os"),
             f"Python {device.get('python')}", packages, thermal and thermal + " (before → after the bench)"]
    return "; ".join(p for p in parts if p)


def can_plot() -> bool:
    try:
        pyplot()
    except EdgeAgeError:
        return False
    return True


def breakdown_sections(columns: dict[str, dict]) -> list[Section]:
    """MAE / gender accuracy by age group, gender and race; one column per ``label: accuracy``."""
    sections = []
    for kind, title in (("age_group", "age group"), ("gender", "gender"), ("race", "race")):
        groups = list(dict.fromkeys(g for acc in columns.values() for g in acc["breakdown"].get(kind, {})))
        rows = []
        for group in groups:
            cells = [acc["breakdown"].get(kind, {}).get(group) for acc in columns.values()]
            n = next(c["n"] for c in cells if c)
            rows.append([group, n] + [("-" if c is None else f"{c['mae']:.2f}" + (
                f" / {c['gender_accuracy']:.0%}" if "gender_accuracy" in c else "")) for c in cells])
        if rows:
            sections.append(Section(f"Accuracy by {title}", "MAE in years / gender accuracy.",
                                    [title, "n", *columns], rows))
    return sections


def write_pages(out: Path, stem: str, title: str, sections: list[Section]) -> None:
    atomic.write_text(out / f"{stem}.md", to_markdown(title, sections))
    atomic.write_text(out / f"{stem}.html", to_html(title, sections))


def write_bench_json(bench: dict, out: Path) -> None:
    """bench.json alone (rewritten after every measurement), strict JSON."""
    write_json(out / "bench.json", bench)


def reference_model(bench: dict) -> str:
    """The model latencies are compared with: the float32 conversion target if benched, else the first model."""
    return next((m["name"] for m in bench["models"] if m.get("target") == "float32"), bench["models"][0]["name"])


def _main_table(bench: dict, found: list[Measurement], names: dict[str, str]) -> tuple[list, list]:
    ref = reference_model(bench)
    ref_p50 = {(m.row["delegate"], m.row["threads"]): m.p50 for m in found if m.model["name"] == ref}
    header = ["model", "delegate", "threads", "KB", "p50 ms", "p90 ms", "p99 ms", "std ms", f"p50 ÷ {names[ref]}",
              "peak MB", "delegated ops", "MAE", "CS@5", "ε-error", "gender", "front"]
    rows = []
    for m in found:
        lat, key = m.row["latency_ms"], (m.row["delegate"], m.row["threads"])
        ratio = m.p50 / ref_p50[key] if key in ref_p50 else None
        rows.append([m.model["name"], m.row["delegate"], m.row["threads"], f"{m.model['size_bytes'] / 1024:.0f}",
                     f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{lat['std']:.3f}",
                     fmt(ratio, ".2f"), fmt(m.row.get("peak_rss_mb"), ".0f"), coverage_cell(m.row.get("coverage")),
                     *accuracy_cells(m.accuracy), "★" if m.front else ""])
    return header, rows


def bench_table(bench: dict) -> str:
    """The accuracy-and-latency table of a bench, in Markdown."""
    return md_table(*_main_table(bench, measurements(bench), short_names([m["name"] for m in bench["models"]])))


def bench_sections(bench: dict, out: Path) -> list[Section]:
    """The sections of bench.md and bench.html; plots are drawn into ``out`` when matplotlib is there."""
    found = measurements(bench)
    names = short_names([m["name"] for m in bench["models"]])
    several = len({m.row["delegate"] for m in found}) > 1
    settings = bench["settings"]
    status = {"complete": "complete", "running": "unfinished (still running, or killed)",
              "interrupted": "INTERRUPTED: these are the measurements made before it stopped",
              "failed": f"FAILED: {bench.get('error')}"}[bench["status"]]
    runtimes = ", ".join(dict.fromkeys(f"{m.row['runtime']['name']} {m.row['runtime']['version']}" for m in found))
    sections = [Section("Device", f"{bench['device']['name']}: {device_summary(bench['device'])}. "
                                  f"Runtimes: {runtimes or '-'}. Bench {status}; started {bench['started']}.")]
    faces = f"accuracy on {settings['faces']}" if settings.get("faces") else "no accuracy (no --data)"
    front = sorted((m for m in found if m.front), key=lambda m: m.p50)
    front_text = (" Pareto front, fastest first: " + " → ".join(
        f"{label(m, names, several)} ({m.p50:.3f} ms, MAE {m.mae:.2f})" for m in front) + ".") if front else ""
    header, rows = _main_table(bench, found, names)
    sections.append(Section("Accuracy and latency",
                            f"Batch 1: p50/p90/p99 of {settings['runs']} timed inferences after {settings['warmup']} "
                            f"warm-up ones{_rounds(settings.get('rounds', 1))}, each in a fresh process (peak MB is "
                            f"that process's peak resident memory); {faces}. {FRONT_NOTE}{front_text}", header, rows))
    accuracy = {f"{names[m['name']]}{' ' + d if several else ''}": acc
                for m in bench["models"] for d, acc in m["accuracy"].items()}
    sections += breakdown_sections(accuracy)
    rows = [(label(m, names, several), m.row) for m in found]
    if bench_sustained.has_windows(bench):
        sections.append(Section("Latency over time",
                                f"Windows of {settings['window_s']:g} s" + (f", {settings['duration_s']:g} s per "
                                "configuration" if settings.get("duration_s") else "") + ". "
                                + " ".join(bench_sustained.verdict_lines(rows, bench.get("thermal", []))),
                                ["measurement", "windows", "runs", "first p50 ms", "last p50 ms", "change",
                                 f"drift > {DRIFT:.0%}"], bench_sustained.sustained_rows(rows)))
    if bench["skipped"]:
        sections.append(Section("Not measured", "", ["model", "delegate", "reason"],
                                [[s["model"], s["delegate"], s["reason"]] for s in bench["skipped"]]))
    if not can_plot():
        return sections + [Section("Plots", NO_PLOTS)]
    plots = []
    if bench_sustained.has_windows(bench):
        plots.append(bench_sustained.over_time_plot(rows, bench.get("thermal", []), out / "over_time.png"))
    points = [{"label": label(m, names, several), "latency": m.p50, "mae": m.mae, "front": m.front}
              for m in found if m.mae is not None]
    if points:
        plots.append(bench_plots.tradeoff({bench["device"]["name"]: points}, out / "tradeoff.png",
                                          f"Accuracy against latency on {bench['device']['name']}"))
    if found:
        plots.append(bench_plots.latency_spread({label(m, names, several): m.row["samples_ms"] for m in found},
                                                out / "latency.png"))
    if accuracy:
        plots.append(bench_plots.error_by_age_lines({k: a["error_by_age"] for k, a in accuracy.items()},
                                              out / "error_by_age.png"))
    return sections + [Section("Plots", "", plots=plots)]


def write_bench(bench: dict, out: Path) -> None:
    """bench.json, bench.md and a self-contained bench.html (with plots when matplotlib is installed),
    replacing the previous ones as one set."""
    with atomic.file_set(out, "bench") as staging:
        write_pages(staging, "bench", f"edge-age bench: {bench['device']['name']}", bench_sections(bench, staging))
        write_bench_json(bench, staging)


def _rounds(rounds: int) -> str:
    return f" per round, in {rounds} interleaved rounds pooled" if rounds > 1 else ""
