"""Latency as it holds up over time: per configuration, p50 of the first window against the last, and
whether the device reported throttling, for the bench pages (a part of them only for a --duration bench)."""
from __future__ import annotations

from pathlib import Path

from edge_age.report import bench_plots
from firmware_host.pipeline.windows import DRIFT, drift


def row_drift(row: dict) -> dict | None:
    """p50 of the row's first and last windows and whether it drifted; None with fewer than two windows."""
    windows = row.get("windows") or []
    return drift(windows[0]["p50"], windows[-1]["p50"]) if len(windows) >= 2 else None


def throttling_line(thermal: list[dict]) -> str:
    """Whether throttling flags appeared during the bench, and how temperature and CPU clock went."""
    reported = [s["throttling"] for s in thermal if s.get("throttling") is not None]
    if not reported:
        text = "throttling: not reported on this device (no vcgencmd get_throttled)"
    else:
        first, seen = set(reported[0]["flags"]), {f for r in reported for f in r["flags"]}
        text = (f"throttling flags appeared: {', '.join(sorted(seen - first))}" if seen - first
                else "no throttling flag appeared")
        if first:
            text += f" (set from the start: {', '.join(sorted(first))})"
    for key, name, unit in (("temperature_c", "temperature", "°C"), ("cpu_mhz", "CPU clock", "MHz")):
        values = [s[key] for s in thermal if s.get(key) is not None]
        if values:
            text += f"; {name} {values[0]:.1f} → {values[-1]:.1f} {unit} (max {max(values):.1f})"
    return text


def verdict_lines(rows: list[tuple[str, dict]], thermal: list[dict]) -> list[str]:
    """One line per labelled latency row with windows to compare, then one on throttling."""
    lines = []
    for label, row in rows:
        d = row_drift(row)
        if d:
            lines.append(f"{label}: p50 {d['first']:.3f} → {d['last']:.3f} ms from the first window to the last "
                         f"({d['change']:+.1%}): {'DRIFTED more than' if d['drifted'] else 'within'} {DRIFT:.0%}.")
    return lines + [throttling_line(thermal).capitalize() + "."]


def sustained_rows(rows: list[tuple[str, dict]]) -> list[list]:
    """Table rows: configuration, windows, their runs, first and last p50, change, drifted."""
    table = []
    for label, row in rows:
        d = row_drift(row)
        if d:
            table.append([label, len(row["windows"]), sum(w["n"] for w in row["windows"]), f"{d['first']:.3f}",
                          f"{d['last']:.3f}", f"{d['change']:+.1%}", "yes" if d["drifted"] else "no"])
    return table


def has_windows(bench: dict) -> bool:
    """Whether the bench ran with --duration and a row has two or more windows to compare (the windows of
    short interleaved rounds are kept, but say little about how latency holds up)."""
    return bool(bench["settings"].get("duration_s")) and any(row_drift(r) for r in bench["latency"])


def over_time_plot(rows: list[tuple[str, dict]], thermal: list[dict], path: Path) -> Path:
    """p50 per window of each row against time, temperature on a second axis where the device reports it."""
    return bench_plots.over_time({label: row["windows"] for label, row in rows if row.get("windows")},
                                 [(s["t_s"],
                                   s["temperature_c"]) for s in thermal if s.get("temperature_c") is not None],
                                 path)
