"""``edge-age run-table``: runs side by side, one row per ``run_report.json``: settings, fps and per-stage p50."""
from __future__ import annotations

import json
from pathlib import Path

from edge_age.report.page import md_table
from firmware_host.errors import EdgeAgeError
from firmware_host.pipeline.stages import STAGES

HEADER = ["run", "source", "model", "delegate/threads", "detector", "frames", "faces/frame", "fps", "detect px/every",
          "detected/carried", "with a face", *(f"{s} p50 ms" for s in STAGES), "dropped"]


def read_report(path: Path) -> dict:
    """A run report, or a one-line error naming the file."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        report["stages"], report["frames"], report["fps"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeAgeError(f"{path} is not a run report of 'edge-age run': {exc}") from None
    return report


def run_row(path: Path, r: dict) -> list:
    """The table row of report ``r`` (from ``path``); reports from before --detect-size and --detect-every
    detected every full frame."""
    try:
        stages = r["stages"]
        return [Path(path).parent.name, r["source"].split("/")[-1], r["target"], f"{r['delegate']}/{r['threads']}",
                r["detector"], r["frames"], round(r["faces"] / max(r["frames"], 1), 2), f"{r['fps']:.1f}",
                f"{r.get('detect_size', 0) or 'full'}/{r.get('detect_every', 1)}",
                f"{r.get('frames_detected', r['frames'])}/{r.get('frames_carried', 0)}",
                f"{r['frames_with_faces'] / max(r['frames'], 1):.1%}" if "frames_with_faces" in r else "",
                *(f"{stages[s]['p50_ms']:.2f}" if stages.get(s, {}).get("count") else "" for s in STAGES),
                r["dropped_frames"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise EdgeAgeError(f"{path} is not a run report of 'edge-age run': {exc}") from None


def run_table(paths: list[Path]) -> str:
    """The Markdown table of the run reports at ``paths``."""
    return md_table(HEADER, [run_row(p, read_report(p)) for p in paths])
