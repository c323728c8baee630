"""Plots of benchmark reports: accuracy against latency with the Pareto front, latency spread, error by age, latency
over time."""
from __future__ import annotations

from itertools import cycle
from pathlib import Path

from edge_age.report.page import legend_outside, pyplot, save_figure, spread_labels

COLORS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _log_ms(axis) -> None:
    """A log-scale milliseconds axis labelled with plain numbers (0.5, 1, 2) rather than powers of ten; between the
    decades only as many labels as fit (all of them within half a decade, 2 and 5 up to two, none beyond)."""
    from matplotlib.ticker import FuncFormatter, LogFormatter

    class Plain(LogFormatter):
        def __call__(self, value, pos=None):
            return f"{value:g}" if super().__call__(value, pos) else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def tradeoff(series: dict[str, list[dict]], path: Path, title: str) -> Path:
    """MAE against p50 latency; each series' Pareto front joined by a step line.

    ``series`` maps a name (a device) to points ``{"label", "latency", "mae", "front"}``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    labels = []
    for color, (name, points) in zip(cycle(COLORS), series.items()):
        ax.scatter([p["latency"] for p in points], [p["mae"] for p in points], color=color, s=28,
                   label=name if len(series) > 1 else None, zorder=3)
        front = sorted((p for p in points if p["front"]), key=lambda p: p["latency"])
        ax.step([p["latency"] for p in front], [p["mae"] for p in front], where="post", color=color, lw=1.2,
                alpha=0.8, zorder=2)
        labels += [ax.annotate(p["label"], (p["latency"], p["mae"]), fontsize=7, xytext=(4, 3),
                               textcoords="offset points", fontweight="bold" if p["front"] else "normal",
                               arrowprops={"arrowstyle": "-", "color": "#999", "lw": 0.5, "shrinkA": 0, "shrinkB": 2})
                   for p in points]
    ax.set_xscale("log")
    _log_ms(ax.xaxis)
    ax.set(xlabel="latency p50, batch 1 (ms, log scale)", ylabel="MAE (years)", title=title)
    ax.grid(True, which="both", alpha=0.25)
    ax.margins(x=0.12, y=0.15)
    if len(series) > 1:
        legend_outside(fig, title="device (line: Pareto front)")
    spread_labels(fig, sorted(labels, key=lambda a: (a.xy[1], a.xy[0])))
    return save_figure(fig, path)


def latency_spread(samples: dict[str, list[float]], path: Path) -> Path:
    """One box per measurement: the distribution of its per-inference latencies."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(samples)))
    ax.boxplot(list(samples.values()), orientation="horizontal", whis=(1, 99), showfliers=True,
               flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(samples) + 1), list(samples), fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _log_ms(ax.xaxis)
    ax.set(xlabel="latency per inference (ms, log scale; whiskers at p1 and p99)", title="Latency distributions")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    return save_figure(fig, path)


def error_by_age_lines(curves: dict[str, dict], path: Path) -> Path:
    """Mean absolute error by true age, one line per model (bins from ``metrics.error_by_age``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for color, (name, bins) in zip(cycle(COLORS), curves.items()):
        centers = [a + bins["width"] / 2 for a in bins["age_from"]]
        ax.plot(centers, bins["mae"], marker="o", ms=3, color=color, label=name)
    ax.set(xlabel="true age (5-year bins)", ylabel="MAE (years)", title="Error by age")
    ax.grid(True, alpha=0.25)
    legend_outside(fig)
    return save_figure(fig, path)


def over_time(series: dict[str, list[dict]], temperature: list[tuple[float, float]], path: Path) -> Path:
    """p50 latency per window against time, one line per measurement; the device's temperature on a
    second axis when there are readings (``temperature``: ``(t_s, °C)`` pairs)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    span = max([w["t_s"] for ws in series.values() for w in ws] + [t for t, _ in temperature] + [0.0])
    scale, unit = (60.0, "min") if span > 300 else (1.0, "s")
    for color, (name, windows) in zip(cycle(COLORS), series.items()):
        ax.plot([w["t_s"] / scale for w in windows], [w["p50"] for w in windows], marker="o", ms=3, color=color,
                label=name)
    ax.set(xlabel=f"time since the bench started ({unit}; a point per window, at its start)",
           ylabel="p50 latency per window (ms)", title="Latency over time")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.25)
    handles, labels = ax.get_legend_handles_labels()
    if temperature:
        twin = ax.twinx()
        handles += twin.plot([t / scale for t, _ in temperature], [c for _, c in temperature], color="#bb5566", lw=1.2,
                             ls="--")
        labels.append("temperature (right axis)")
        twin.set_ylabel("temperature (°C)")
    legend_outside(fig, handles, labels)
    return save_figure(fig, path)
