"""An MJPEG-over-HTTP view of the annotated frames, so a headless device can be watched from a browser.

``/`` is a small page, ``/stream.mjpg`` the multipart stream, ``/frame.jpg`` the latest frame and
``/stats.json`` the latest frame's record. Loopback by default; serving on another address is
the user's explicit choice (``--serve 0.0.0.0:8080``).
"""
from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.jsonio import to_json

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>edge-age</title>
<style>body{font:14px sans-serif;background:#111;color:#eee;margin:1em}img{max-width:100%}</style></head>
<body><h3>edge-age live</h3><img src="/stream.mjpg" alt="stream"><pre id="s"></pre>
<script>setInterval(()=>fetch('/stats.json').then(r=>r.json()).then(j=>{s.textContent=JSON.stringify(j,null,1)}),1000)</script>
</body></html>"""
BOUNDARY = "edgeageframe"


def parse_address(text: str) -> tuple[str, int]:
    """``'HOST:PORT'`` or ``'PORT'`` (loopback) to ``(host, port)``."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise EdgeAgeError(f"--serve wants HOST:PORT or PORT, not {text!r}") from None
    if not 0 <= number <= 65535:
        raise EdgeAgeError(f"port {number} is out of range")
    return host or "127.0.0.1", number


class MjpegServer:
    """Serves the latest published frame to any number of browsers, on a background thread."""

    def __init__(self, address: str = "127.0.0.1:8080", quality: int = 80):
        self.quality, self.jpeg, self.stats = quality, None, {}
        self.changed = threading.Condition()
        self.closed = False
        host, port = parse_address(address)
        try:
            self.httpd = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            raise EdgeAgeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, name="mjpeg", daemon=True).start()

    def write(self, image: np.ndarray, record: dict | None = None) -> None:
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        with self.changed:
            self.jpeg, self.stats = data.tobytes(), record or {}
            self.changed.notify_all()

    def close(self, ok: bool = True) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, last: bytes | None, timeout: float = 5.0) -> bytes | None:
        with self.changed:
            self.changed.wait_for(lambda: self.closed or (self.jpeg is not None and self.jpeg is not last), timeout)
            return None if self.closed else self.jpeg

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the run prints its own progress
                pass

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                if path in ("/", "/index.html"):
                    self._send(PAGE, "text/html; charset=utf-8")
                elif path == "/stats.json":
                    self._send(to_json(server.stats, indent=None).encode(), "application/json")
                elif path == "/frame.jpg":
                    jpeg = server._next(None, timeout=5.0)
                    if jpeg is None:
                        self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                    else:
                        self._send(jpeg, "image/jpeg")
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)

            def _stream(self):
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                last = None
                try:
                    while (jpeg := server._next(last)) is not None:
                        if jpeg is last:
                            continue
                        last = jpeg
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                         "\r\n\r\n".encode() + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
