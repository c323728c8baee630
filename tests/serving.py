"""A real ``edge-age serve`` process on a free loopback port, for the tests that talk to it over HTTP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from tests.conftest import ROOT
from tests.scenes import YUNET


class Server:
    """``python -m edge_age serve`` on a free loopback port; its log lines are collected as they come."""

    def __init__(self, model, env: dict, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_age", "serve", "-m", str(model), "--port", "0",
                                      "--detector", "yunet", "--detector-model", str(YUNET), *args],
                                     cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = time.monotonic() + 300  # a loaded 2-core machine starts TF-free LiteRT slowly
        while not any(" on http://" in line for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.1)
        self.url = next(line for line in self.lines if " on http://" in line).split(" on ")[-1].rstrip("/")

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def request(self, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body) of one request; error statuses are answers too."""
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {},
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def predict(self, body: bytes, query: str = "", headers: dict | None = None) -> tuple[int, dict]:
        status, _, data = self.request("/predict" + query, body, headers)
        assert self.healthy()
        return status, json.loads(data)

    def healthy(self) -> bool:
        status, _, data = self.request("/health")
        return status == 200 and json.loads(data)["status"] == "ok"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)
