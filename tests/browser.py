"""A real headless Chromium driven through the DevTools protocol over a pipe (stdlib only, no driver).

Debian's ``chromium`` package; tests that need it skip when ``/usr/bin/chromium`` is absent.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("EDGE_AGE_CHROMIUM", "/usr/bin/chromium"))


def need_chromium() -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set EDGE_AGE_CHROMIUM) to run "
                    "the browser tests")


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4, so that placing the pipe at fds 3 and 4 cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page; ``call`` sends a DevTools command to that page."""

    def __init__(self, width: int = 1280, height: int = 1400, offline: bool = False):
        need_chromium()
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        to_browser, from_browser = (_above_4(fd) for fd in (to_browser, from_browser))
        self.profile = tempfile.TemporaryDirectory(prefix="edge-age-chromium-")
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
                 f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}", "--hide-scrollbars"]
        # fd 3 carries commands to the browser, fd 4 its replies (Chromium's --remote-debugging-pipe)
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} '
                                      f'{to_browser}<&- {from_browser}>&-', str(CHROMIUM), *flags, "about:blank"],
                                     pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._id, self._buffer, self.session = 0, b"", None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        if offline:
            self.call("Network.enable")
            self.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                      uploadThroughput=-1)

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._replies, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("Chromium did not answer in time (or exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"still false after {timeout} s: {expression}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def fit(self) -> dict:
        """How the open page fits the window: its ``width``, the document's ``scrollWidth``, and up to ten elements
        that reach past the window's right edge or scroll sideways in a box of their own (``wide``)."""
        return self.evaluate("""(() => {
          const width = window.innerWidth, wide = [];
          for (const e of document.body.querySelectorAll("*")) {
            const right = e.getBoundingClientRect().right, overflow = getComputedStyle(e).overflowX;
            const scrolls = ["auto", "scroll"].includes(overflow) && e.scrollWidth > e.clientWidth + 1;
            if (right > width + 0.5 || scrolls)
              wide.push(`<${e.tagName.toLowerCase()} class="${e.className}"> right ${Math.round(right)} px, ` +
                        `scrollWidth ${e.scrollWidth} in ${e.clientWidth}`);
          }
          return {width, scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 10)};
        })()""")

    def set_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.session = None
            self.call("Browser.close", timeout=5)
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)
        os.close(self._replies)
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
