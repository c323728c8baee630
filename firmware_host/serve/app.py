"""``edge-age serve``: the ages and genders of the faces in a posted photo, over HTTP (Starlette on uvicorn).

``POST /predict`` takes a JPEG, PNG or WebP as the body or as a ``multipart/form-data`` file field and answers
JSON, or the annotated JPEG with ``?annotate=1``; ``?model=NAME`` picks one of the served models (``GET /info``
lists them). ``GET /`` is a page for photos and the webcam; ``GET /health`` and ``GET /info`` describe the server.
Loopback by default; another address is the user's explicit choice.
"""
from __future__ import annotations

import asyncio
import logging
import platform
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_host.errors import EdgeAgeError
from firmware_host.serve.pool import LOG, Pool, Query, RequestError, image_kind

try:
    import python_multipart  # noqa: F401 (Starlette's form parser, imported only when a form comes)
    import starlette
    import uvicorn
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError:
    raise EdgeAgeError("edge-age serve needs Starlette, uvicorn and python-multipart: "
                       "pip install 'edge-age[serve]'") from None

logging.getLogger("python_multipart").setLevel(logging.ERROR)  # its warnings about bad forms: answered 400 already
PAGE = Path(__file__).with_name("static") / "serve.html"
DRAIN = 16 * 2**20  # read and drop up to this much of a too-large body, so that the client sees the 413
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """``models``: each name a request may choose (``?model=``) and its ``.tflite`` file; ``default`` answers a
    request that names none."""

    models: dict[str, Path]
    default: str
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 2
    queue: int = 32
    max_body: int = 10 * 2**20
    timeout: float = 30.0
    detector: str = "auto"
    detector_model: Path | None = None
    delegate: str = "cpu"
    library: str | None = None
    device: str | None = None


def parse_query(params) -> Query:
    """``threshold`` (0..1), ``largest`` and ``annotate`` (1/true/yes/on) and ``model`` from the query string."""
    threshold = params.get("threshold")
    if threshold is not None:
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = -1.0
        if not 0.0 <= threshold <= 1.0:
            raise RequestError(400, f"threshold must be a number from 0 to 1, not {params['threshold']!r}")
    return Query(threshold, params.get("largest", "").lower() in TRUE, params.get("annotate", "").lower() in TRUE,
                 params.get("model"))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 past ``limit`` bytes (drained up to DRAIN more, so the answer reaches the client)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and (
            int(declared) > limit + DRAIN or "100-continue" in request.headers.get("expect", "").lower()):
        raise RequestError(413, f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit + DRAIN:
            break
    if size > limit:
        raise RequestError(413, f"the body is over the limit of {limit:,} bytes")
    return b"".join(chunks)


async def image_bytes(request: Request, limit: int) -> bytes:
    """The image: the raw body, or the file field of a multipart form (``image``, else the first file)."""
    body = await read_body(request, limit)
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}
        try:
            form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
        except HTTPException as exc:  # how Starlette reports a form python-multipart cannot parse
            raise RequestError(400, f"the multipart body does not parse: {exc.detail}") from None
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            upload = form["image"] if isinstance(form.get("image"), UploadFile) else next(iter(files), None)
            if upload is None:
                raise RequestError(400, "the multipart form has no file field: send the image as the field 'image'")
            body = await upload.read()
        finally:
            await form.close()
    if not body:
        raise RequestError(400, "the body is empty: send the image's bytes, or a multipart form with the field 'image'")
    if image_kind(body) is None:
        raise RequestError(415, "the body is not a JPEG, PNG or WebP image")
    return body


def create_app(pool: Pool, options: ServeOptions) -> AccessLog:
    """The Starlette application: the page, /predict, /health and /info, with one log line per request."""
    page = PAGE.read_text(encoding="utf-8")
    started = time.time()
    info = {**pool.describe(), "max_body_bytes": options.max_body, "timeout_s": options.timeout,
            "versions": {**_versions(), "python": platform.python_version()}}

    async def predict(request: Request) -> Response:
        try:
            answer, jpeg = await asyncio.wait_for(_predict(request), options.timeout)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except asyncio.TimeoutError:
            return JSONResponse({"error": f"timed out after {options.timeout:g} s"}, 503)
        except ClientDisconnect:
            return Response(status_code=400)
        request.state.faces = len(answer["faces"])
        request.state.model = answer["model"]
        if jpeg is not None:
            return Response(jpeg, media_type="image/jpeg", headers={"X-Faces": str(len(answer["faces"]))})
        return JSONResponse(answer)

    async def _predict(request: Request):
        body = await image_bytes(request, options.max_body)
        return await pool.predict(body, parse_query(request.query_params))

    async def index(_: Request) -> Response:
        return HTMLResponse(page)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime_s": round(time.time() - started, 1), "busy": pool.busy})

    async def describe(_: Request) -> Response:
        return JSONResponse(info)

    app = Starlette(routes=[Route("/", index), Route("/predict", predict, methods=["POST"]),
                            Route("/health", health), Route("/info", describe)])
    return AccessLog(app)


class AccessLog:
    """ASGI middleware: one line per request (client, method, path, status, bytes in and out, the model that
    answered and its faces, ms)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, size, received = time.perf_counter(), 500, 0, 0
        state = scope.setdefault("state", {})

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def counted_send(message):
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            query = f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else ""
            answered = f" model={state['model']} faces={state['faces']}" if "faces" in state else ""
            client = scope.get("client") or ("-", 0)
            LOG.info("%s %s %s%s %d in=%dB out=%dB%s %.1fms", client[0], scope["method"], scope["path"], query,
                     status, received, size, answered, (time.perf_counter() - start) * 1000)


def _versions() -> dict[str, str]:
    from firmware_host.infer.system_info import versions
    return {**versions(), "starlette": starlette.__version__, "uvicorn": uvicorn.__version__}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a one-line error."""
    sock = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only on TCP sockets, and a kept-alive client would
        # otherwise wait for its own delayed ACK (40 ms) before each answer's body arrives
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise EdgeAgeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(options: ServeOptions) -> None:
    """Load the workers, bind, serve until SIGTERM or Ctrl-C; in-flight requests finish first."""
    pool = Pool(options.models, options.default, size=options.threads, waiting=options.queue, detector=options.detector,
                detector_model=options.detector_model, delegate=options.delegate, library=options.library,
                device=options.device)
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(create_app(pool, options), access_log=False, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=max(1, int(options.timeout)))
    server = uvicorn.Server(config)
    others = [name for name in options.models if name != options.default]
    LOG.info("serving model %s (%s)%s with the %s detector, %d workers, on http://%s:%d/", options.default,
             options.models[options.default], f"; also {', '.join(others)} on request" if others else "",
             pool.first.detector.name, options.threads, f"[{host}]" if ":" in host else host, port)
    # uvicorn re-raises the signal it stopped on once it is done: let SIGTERM then end the process normally.
    previous = signal.signal(signal.SIGTERM, lambda *_: LOG.info("stopped on SIGTERM"))
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.close()
        sock.close()
