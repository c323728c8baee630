"""``make soak``: a long ``edge-age run`` on a looping generated video with ``--serve`` and one client reading
the MJPEG stream; the run's memory (RSS) and open files are sampled every ``--every`` seconds, and
``soak.json`` and ``soak.md`` say how they went.

    python -m edge_age.bench.soak --seconds 3600 --data FOLDER_OF_CHIPS --out runs/soak
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json
from firmware_host.sinks.mjpeg import BOUNDARY


def sample(pid: int) -> dict:
    """Resident memory in MiB and open file descriptors of process ``pid`` (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return {"rss_mib": round(rss_kb / 1024, 1), "open_files": len(os.listdir(f"/proc/{pid}/fd"))}
    process = psutil.Process(pid)
    return {"rss_mib": round(process.memory_info().rss / 2**20, 1), "open_files": process.num_fds()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer(threading.Thread):
    """One client reading the MJPEG stream until it ends; counts the frames it received."""

    def __init__(self, url: str):
        super().__init__(name="viewer", daemon=True)
        self.url, self.frames, self.error = url, 0, None

    def run(self) -> None:
        tail = b""
        try:
            with urllib.request.urlopen(self.url, timeout=60) as stream:
                while chunk := stream.read(65536):
                    data = tail + chunk
                    self.frames += data.count(f"--{BOUNDARY}".encode())
                    tail = data[-len(BOUNDARY) - 2:]
        except OSError as exc:
            self.error = str(exc)


def wait_for(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    """Return once ``url`` answers; exit if ``process`` (the server) ends or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=10).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"soak: {url} never answered (exit code {process.poll()})")


def wait_for_stream(base: str, run: subprocess.Popen, seconds: float = 300) -> None:
    wait_for(base + "frame.jpg", run, seconds)


RSS_GROWTH_MIB = 5.0  # the most a soaked process may grow after its first minute
PEAK_WINDOW_S = 300.0  # RSS is compared as peaks over this long: a frame's buffers come and go by several MiB


def at_one_minute(samples: list[dict]) -> dict | None:
    """The first sample taken a minute or more in (the last one of a shorter soak): memory has settled there."""
    return next((s for s in samples if s["t_s"] >= 60), samples[-1] if samples else None)


def between(samples: list[dict], key: str, start: float, end: float) -> list:
    """``key`` of the samples taken from ``start`` to ``end`` seconds in."""
    return [s[key] for s in samples if start <= s["t_s"] <= end]


def summary(samples: list[dict], report: dict, viewer: Viewer, seconds: float) -> dict:
    """RSS growth (the peak of the last five minutes against the peak of the five after the first), open files
    (a leak raises their floor: the fewest of the last five minutes against the fewest of the first five; a
    video reopened at each loop shows for a moment), frames and fps of the run, frames the viewer got; samples
    of the run's shutdown (after ``seconds``) are left out of the figures."""
    working = [s for s in samples if s["t_s"] < seconds] or samples
    start, end = at_one_minute(working)["t_s"], working[-1]["t_s"]
    early, late = (start, start + PEAK_WINDOW_S), (end - PEAK_WINDOW_S, end)
    first, last = max(between(working, "rss_mib", *early)), max(between(working, "rss_mib", *late))
    files = between(working, "open_files", start, end)
    files_first, files_last = min(between(working, "open_files", *early)), min(between(working, "open_files", *late))
    growth = round(last - first, 1)
    return {"seconds": seconds, "status": report.get("status"), "frames": report.get("frames"),
            "fps": report.get("fps"), "source_loops": report.get("source_loops"),
            "rss_mib_first_peak": first, "rss_mib_last_peak": last, "rss_growth_mib": growth,
            "open_files_min": min(files), "open_files_max": max(files),
            "open_files_floor_first": files_first, "open_files_floor_last": files_last,
            "viewer_frames": viewer.frames, "viewer_error": viewer.error,
            "passed": growth < RSS_GROWTH_MIB and files_last <= files_first and report.get("status") == "finished",
            "samples": samples}


def page(title: str, figures: list[tuple[str, object]], samples: list[dict], columns: list[tuple[str, str]]) -> str:
    """A soak's Markdown: the title, a table of its figures, then one row per sample (``columns``: header, key)."""
    head = "".join(f"| {name} | {value} |\n" for name, value in figures)
    rows = "".join("| " + " | ".join(f"{s[k]:.0f}" if k == "t_s" else str(s.get(k, "-")) for _, k in columns) + " |\n"
                   for s in samples)
    return (f"# {title}\n\n| figure | value |\n| --- | --- |\n{head}\n"
            f"| {' | '.join(h for h, _ in columns)} |\n|{' --- |' * len(columns)}\n{rows}")


def markdown(result: dict) -> str:
    r = result
    minutes = PEAK_WINDOW_S / 60
    return page(f"Soak: {r['seconds']:.0f} s of edge-age run --loop --serve with one viewer",
                [("run status", r["status"]), ("frames", r["frames"]), ("fps", r["fps"]),
                 ("video loops", r["source_loops"]),
                 (f"RSS peak, first {minutes:g} min after the first minute (MiB)", r["rss_mib_first_peak"]),
                 (f"RSS peak, last {minutes:g} min (MiB)", r["rss_mib_last_peak"]),
                 (f"RSS growth (MiB; under {RSS_GROWTH_MIB:g})", r["rss_growth_mib"]),
                 ("open files after the first minute (min, max)", f"{r['open_files_min']}, {r['open_files_max']}"),
                 (f"fewest open files, first and last {minutes:g} min",
                  f"{r['open_files_floor_first']}, {r['open_files_floor_last']}"),
                 ("frames the viewer received", r["viewer_frames"]),
                 ("verdict", "passed" if r["passed"] else "FAILED")],
                r["samples"], [("t (s)", "t_s"), ("RSS (MiB)", "rss_mib"), ("open files", "open_files")])


def soak(*, data: Path, out: Path, seconds: float, every: float, max_fps: float, model: str) -> dict:
    """Run the soak and write ``soak.json`` and ``soak.md`` into ``out``."""
    out = atomic.writable_dir(out)
    cli = [sys.executable, "-m", "edge_age"]
    video = out / "soak.avi"
    subprocess.run([*cli, "data", "video", str(data), "--faces", "2", "--frames", "150", "--out", str(video)],
                   check=True)
    port = free_port()
    run = subprocess.Popen([*cli, "run", "-m", model, "-s", str(video), "--loop", "--serve", str(port), "--max-fps",
                            str(max_fps), "--duration", str(seconds), "--threads", "1", "--out", str(out / "run")])
    base = f"http://127.0.0.1:{port}/"
    wait_for_stream(base, run)
    viewer = Viewer(base + "stream.mjpg")
    viewer.start()
    start, due, samples, latest = time.monotonic(), 0.0, [], None
    while run.poll() is None:
        try:  # every half second, so that the last sample is taken just before the run ends
            latest = {"t_s": round(time.monotonic() - start, 1), **sample(run.pid)}
        except (OSError, StopIteration):  # the run ended between poll() and the sample
            break
        if latest["t_s"] >= due:
            samples.append(latest)
            print(f"soak: {latest}", file=sys.stderr)
            due += every
        time.sleep(0.5)
    if latest and (not samples or latest is not samples[-1]):
        samples.append(latest)
    run.wait()
    report = json.loads((out / "run" / "run_report.json").read_text())
    result = summary(samples, report, viewer, seconds)
    write_result(out, "soak", result, markdown(result))
    return result


def write_result(out: Path, stem: str, result: dict, text: str) -> None:
    """``STEM.json`` and ``STEM.md`` in ``out``, replacing the previous pair together."""
    with atomic.file_set(out, stem) as staging:
        write_json(staging / f"{stem}.json", result)
        atomic.write_text(staging / f"{stem}.md", text)


def arguments(doc: str, *, out: str, data: str) -> argparse.ArgumentParser:
    """The options every soak takes: --data, --out, --seconds, --every, --model."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help=data)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--every", type=float, default=30.0, help="Seconds between samples.")
    parser.add_argument("--model", default="s")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, out="runs/soak", data="Folder of face chips for the generated video.")
    parser.add_argument("--max-fps", type=float, default=10.0, help="The run's frame-rate cap (spares the CPU).")
    args = parser.parse_args(argv)
    result = soak(data=args.data, out=args.out, seconds=args.seconds, every=args.every, max_fps=args.max_fps,
                  model=args.model)
    print(markdown(result))
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
