"""``make serve-soak``: a long ``edge-age serve`` under ``--clients`` clients of the project's load tool
(:mod:`firmware_host.serve.load`) posting one face photo; after every ``--every`` seconds of load the server's
memory (RSS) and open files are sampled with the answers per second and the errors of that window, and
``serve-soak.json`` and ``serve-soak.md`` say how it went.

    python -m edge_age.bench.serve_soak --seconds 3600 --data FOLDER_OF_CHIPS --out runs/serve-soak
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_age.bench.soak import (
    RSS_GROWTH_MIB,
    arguments,
    at_one_minute,
    free_port,
    page,
    sample,
    wait_for,
    write_result,
)
from edge_age.data.scenes import make_photos, read_chips
from firmware_host.files import atomic
from firmware_host.serve.load import load


def photo(data: Path, out: Path) -> bytes:
    """A 640x480 photo with one real face from ``data``, as JPEG bytes."""
    folder = out / "photo"
    make_photos(read_chips(data, count=1, seed=0), folder, seed=0)
    return sorted(folder.glob("*.jpg"))[0].read_bytes()


def settled(pid: int, idle_files: int, seconds: float = 5.0) -> dict:
    """A sample of ``pid`` once its open files are back at ``idle_files`` (the clients' sockets closed on its
    side too), or after ``seconds``: a leak shows as more files at every window's end."""
    deadline = time.monotonic() + seconds
    while (now := sample(pid))["open_files"] > idle_files and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def window(url: str, body: bytes, pid: int, *, clients: int, seconds: float, start: float, idle_files: int) -> dict:
    """``seconds`` of load, then one sample of the server: RSS, open files, answers per second, errors."""
    result = load(url, body, clients=clients, seconds=seconds)
    return {"t_s": round(time.monotonic() - start, 1), **settled(pid, idle_files), "answers": result["requests"],
            "answers_per_s": result["answered_200_per_s"], "p50_ms": result["latency_200"].get("p50_ms"),
            "errors": sum(n for status, n in result["statuses"].items() if status != "200")}


def summary(samples: list[dict], *, seconds: float, clients: int, exit_code: int) -> dict:
    """RSS at 1 min and at the end and their difference, open files, errors, answers per second first and last."""
    loaded = samples[1:]
    minute = at_one_minute(loaded)
    files = [s["open_files"] for s in loaded]
    growth = round(loaded[-1]["rss_mib"] - minute["rss_mib"], 1)
    errors = sum(s["errors"] for s in loaded)
    return {"seconds": seconds, "clients": clients, "answers": sum(s["answers"] for s in loaded), "errors": errors,
            "answers_per_s_first": loaded[0]["answers_per_s"], "answers_per_s_last": loaded[-1]["answers_per_s"],
            "rss_mib_idle": samples[0]["rss_mib"], "rss_mib_at_1_min": minute["rss_mib"],
            "rss_mib_at_end": loaded[-1]["rss_mib"], "rss_growth_after_1_min_mib": growth,
            "open_files_min": min(files), "open_files_max": max(files), "server_exit_code": exit_code,
            "passed": growth < RSS_GROWTH_MIB and errors == 0 and min(files) == max(files) and exit_code == 0,
            "samples": samples}


def markdown(result: dict) -> str:
    r = result
    return page(f"Serve soak: {r['seconds']:.0f} s of edge-age serve with {r['clients']} clients",
                [("answers", f"{r['answers']:,}"), ("errors", r["errors"]),
                 ("answers/s, first window", r["answers_per_s_first"]),
                 ("answers/s, last window", r["answers_per_s_last"]),
                 ("RSS idle / at 1 min / at the end (MiB)",
                  f"{r['rss_mib_idle']} / {r['rss_mib_at_1_min']} / {r['rss_mib_at_end']}"),
                 (f"RSS growth after 1 min (MiB; under {RSS_GROWTH_MIB:g})", r["rss_growth_after_1_min_mib"]),
                 ("open files under load (min, max)", f"{r['open_files_min']}, {r['open_files_max']}"),
                 ("server exit code on SIGTERM", r["server_exit_code"]),
                 ("verdict", "passed" if r["passed"] else "FAILED")],
                r["samples"], [("t (s)", "t_s"), ("RSS (MiB)", "rss_mib"), ("open files", "open_files"),
                               ("answers/s", "answers_per_s"), ("p50 ms", "p50_ms"), ("errors", "errors")])


def soak_server(*, data: Path, out: Path, seconds: float, every: float, clients: int, model: str) -> dict:
    """Run the soak and write ``serve-soak.json`` and ``serve-soak.md`` into ``out``."""
    out = atomic.writable_dir(out)
    body = photo(data, out)
    port = free_port()
    log = (out / "serve.log").open("w")  # noqa: SIM115 (closed below) a line per request: not for the terminal
    server = subprocess.Popen([sys.executable, "-m", "edge_age", "serve", "-m", model, "--port", str(port)],
                              stderr=log)
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_for(base + "health", server)
        start = time.monotonic()
        samples = [{"t_s": 0.0, **sample(server.pid)}]
        while (left := seconds - (time.monotonic() - start)) > 1:
            samples.append(window(base + "predict", body, server.pid, clients=clients, seconds=min(every, left),
                                  start=start, idle_files=samples[0]["open_files"]))
            print(f"serve-soak: {samples[-1]}", file=sys.stderr)
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=120)
        log.close()
    result = summary(samples, seconds=seconds, clients=clients, exit_code=exit_code)
    write_result(out, "serve-soak", result, markdown(result))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, out="runs/serve-soak", data="Folder of face chips for the posted photo.")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    result = soak_server(data=args.data, out=args.out, seconds=args.seconds, every=args.every, clients=args.clients,
                         model=args.model)
    print(markdown(result))
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
