"""Load on a running ``edge-age serve``: N clients post one photo to /predict in a loop for a while.

    python -m firmware_host.serve.load photo.jpg --url http://127.0.0.1:8000 --clients 20 --seconds 30

Each client keeps one connection and sends its next request when the previous one is answered.
Prints JSON: requests, their statuses, answers per second, and the latency in ms (p50, p90, p99, max)
of the successful ones.
"""
from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from firmware_host.pipeline.stages import summarize


def client(url: str, body: bytes, until: float, *, times: list[float], statuses: Counter, lock: threading.Lock) -> None:
    """Post ``body`` to ``url`` over one kept-alive connection until ``until``, recording each answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            connection.request("POST", path, body, {"Content-Type": "image/jpeg"})
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            connection.close()
            time.sleep(0.1)  # no busy loop against a server that is gone
        with lock:
            if status == 200:
                times.append(time.perf_counter() - start)
            statuses[status] += 1
    connection.close()


def load(url: str, body: bytes, *, clients: int, seconds: float) -> dict:
    """Run ``clients`` clients for ``seconds``; the summary of what they saw (latency of the 200 answers)."""
    health = url.rsplit("/", 1)[0] + "/health"
    try:
        urllib.request.urlopen(health, timeout=10).read()
    except OSError as exc:
        raise SystemExit(f"serve_load: {health} does not answer ({exc}): start edge-age serve first") from None
    times: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(url, body, start + seconds),
                                kwargs={"times": times, "statuses": statuses, "lock": lock})
               for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    return {"url": url, "clients": clients, "seconds": round(wall, 2), "body_bytes": len(body),
            "requests": len(times), "statuses": {str(k): v for k, v in statuses.items()},
            "answered_200_per_s": round(len(times) / wall, 2), "latency_200": summarize(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path, help="The image to post (for example a 640x480 JPEG).")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="The server [default: %(default)s].")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(load(args.url.rstrip("/") + "/predict", args.photo.read_bytes(), clients=args.clients,
                          seconds=args.seconds), indent=1))


if __name__ == "__main__":
    main()
