"""An MJPEG-over-HTTP view of the annotated frames, so a headless device can be watched from a browser.

``/`` is a small page, ``/stream.mjpg`` the multipart stream, ``/frame.jpg`` the latest frame and
``/stats.json`` the latest frame's record. Loopback by default; serving on another address is
the user's explicit choice (``--serve 0.0.0.0:8080``, IPv6 as ``[::1]:8080``).

At most ``MAX_CONNECTIONS`` connections are served at once (more are answered 503 and closed), a connection
idle for ``IDLE_TIMEOUT_S`` (no request, or a client that stops reading its stream) is closed, and up to
``BACKLOG`` connections may wait to be accepted.
"""
from __future__ import annotations

import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files.jsonio import to_json

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>edge-age</title>
<style>body{font:14px sans-serif;background:#111;color:#eee;margin:1em}img{max-width:100%}</style></head>
<body><h3>edge-age live</h3><img src="/stream.mjpg" alt="stream"><pre id="s"></pre>
<script>setInterval(()=>fetch('/stats.json').then(r=>r.json()).then(j=>{s.textContent=JSON.stringify(j,null,1)}),1000)</script>
</body></html>"""
BOUNDARY = "edgeageframe"
MAX_CONNECTIONS = 32
IDLE_TIMEOUT_S = 30.0
BACKLOG = 64
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        b"too many viewers; try again later\n")


def parse_address(text: str) -> tuple[str, int]:
    """``'HOST:PORT'``, ``'[IPv6]:PORT'`` or ``'PORT'`` (loopback) to ``(host, port)``."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise EdgeAgeError(f"{{}} wants an IPv6 address in brackets, as [::1]:8080, not {literal(repr(text))}",
                           option="--serve", parameter="serve")
    try:
        number = int(port)
    except ValueError:
        raise EdgeAgeError(f"{{}} wants HOST:PORT or PORT, not {literal(repr(text))}", option="--serve",
                           parameter="serve") from None
    if not 0 <= number <= 65535:
        raise EdgeAgeError(f"port {number} is out of range")
    return host or "127.0.0.1", number


class _Server(ThreadingHTTPServer):
    """A threading HTTP server with a connection cap, a larger backlog and IPv6 addresses."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler, max_connections: int):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class MjpegServer:
    """Serves the latest published frame to up to ``max_connections`` browsers, on a background thread."""

    def __init__(self, address: str = "127.0.0.1:8080", quality: int = 80, *,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT_S):
        self.quality, self.jpeg, self.stats = quality, None, {}
        self.changed = threading.Condition()
        self.closed = False
        host, port = parse_address(address)
        try:
            self.httpd = _Server((host, port), self._handler(idle_timeout), max_connections)
        except OSError as exc:
            raise EdgeAgeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.httpd.server_address[1]}/"
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

    def _handler(self, idle_timeout: float):
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout  # the socket's: an idle client, or one that stopped reading, is dropped

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
                except OSError:  # gone (broken pipe, reset) or not reading for idle_timeout
                    pass

        return Handler
