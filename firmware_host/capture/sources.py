"""Frame sources: camera index (V4L2), video file, image file or folder, RTSP/HTTP stream, Pi camera.

``open_source(spec)`` returns a source whose ``frames()`` yields :class:`Frame` until the input
ends. Live sources (cameras, streams) are reopened with back-off when they drop out;
:class:`LatestFrames` reads them on a thread into a bounded queue that drops old frames.
"""
from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_host.capture import images
from firmware_host.capture.images import IMAGE_SUFFIXES
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.logs import STATUS

STREAM_PREFIXES = ("rtsp://", "rtsp:/", "http://", "https://", "rtmp://", "udp://", "tcp://")
PICAMERA = ("picamera", "picamera2", "libcamera")
log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """A captured image (BGR or greyscale) with its sequence number, wall time and grab time."""

    index: int
    time: float
    image: np.ndarray
    grab_s: float
    name: str = ""


class ImageSource:
    """An image file or a folder of images, in name order; unreadable files are skipped and counted."""

    live, fps = False, None

    def __init__(self, path: Path):
        self.files = (sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir()
                      else [path])
        if not self.files:
            raise EdgeAgeError(f"no images in {path}")
        self.description, self.skipped, self.first_reason = str(path), [], ""

    def check_any_read(self) -> None:
        """After the last file: an error when not one of them could be read (a run of nothing is not a result)."""
        if self.skipped and len(self.skipped) == len(self.files):
            raise EdgeAgeError(f"no readable image in {self.description} ({self.first_reason})")

    def frames(self) -> Iterator[Frame]:
        for i, path in enumerate(self.files):
            start = time.perf_counter()
            image, reason = images.read(path, cv2.IMREAD_UNCHANGED)  # unreadable, over the pixel limit: skipped
            if image is None or image.ndim not in (2, 3):
                reason = reason or f"an image of {image.ndim} dimensions"
                log.warning("skipped %s: %s", path.name, reason)
                self.first_reason = self.first_reason or f"{path.name}: {reason}"
                self.skipped.append(path.name)
                continue
            if image.ndim == 3 and image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            if image.dtype != np.uint8:
                image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
            yield Frame(i, time.time(), image, time.perf_counter() - start, path.name)


class VideoSource:
    """OpenCV ``VideoCapture`` on a camera index, a file or a stream URL; live ones reopen with back-off."""

    def __init__(self, target: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None, *, retries: int = 5, backoff_s: float = 0.5, loop: bool = False):
        self.target, self.live = target, isinstance(target, int) or str(target).startswith(STREAM_PREFIXES)
        if loop and self.live:
            raise EdgeAgeError(f"{{}} rewinds video files; {literal(target)} is a camera or a stream",
                               option="--loop", parameter="loop=True")
        self.loop, self.loops = loop, 0
        self.settings = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps}
        self.retries, self.backoff_s = retries, backoff_s
        self.description = f"camera {target}" if isinstance(target, int) else str(target)
        self.reopened, self.skipped = 0, []
        self.capture = self._open()
        if self.capture is None:
            what = (f"camera {target} cannot be opened (no /dev/video{target}, or it is busy)"
                    if isinstance(target, int) else f"cannot open video {target}")
            raise EdgeAgeError(what)
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or fps

    def _open(self):
        api = cv2.CAP_V4L2 if isinstance(self.target, int) and sys.platform.startswith("linux") else cv2.CAP_ANY
        capture = cv2.VideoCapture(self.target, api)
        if not capture.isOpened():
            capture.release()
            return None
        for prop, value in self.settings.items():
            if value:
                capture.set(prop, value)
        return capture

    def _reopen(self) -> bool:
        self.capture.release()
        for attempt in range(self.retries):
            time.sleep(self.backoff_s * 2**attempt)
            capture = self._open()
            if capture is not None:
                self.capture, self.reopened = capture, self.reopened + 1
                return True
        return False

    def _rewind(self) -> bool:
        """Start a video file again from its first frame (``--loop``)."""
        self.capture.release()
        capture = self._open()
        if capture is None:
            return False
        self.capture, self.loops = capture, self.loops + 1
        return True

    def frames(self) -> Iterator[Frame]:
        index = rewound_at = 0
        try:
            while True:
                start = time.perf_counter()
                ok, image = self.capture.read()
                if not ok:
                    if not self.live:
                        if self.loop and index > rewound_at and self._rewind():  # a file that yields no frame ends
                            rewound_at = index
                            continue
                        return
                    log.info("edge-age: %s stopped delivering frames; reopening", self.description, extra=STATUS)
                    if not self._reopen():
                        raise EdgeAgeError(f"{self.description} disappeared: reopening it failed "
                                           f"{self.retries} times")
                    continue
                yield Frame(index, time.time(), image, time.perf_counter() - start)
                index += 1
        finally:
            self.capture.release()


class PiCameraSource:
    """The Raspberry Pi camera module through picamera2 (libcamera)."""

    live = True

    def __init__(self, width: int | None = None, height: int | None = None, fps: float | None = None):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise EdgeAgeError("the Pi camera needs picamera2: sudo apt install python3-picamera2 "
                               "(and create the venv with --system-site-packages)") from None
        try:
            self.camera = Picamera2()
        except (RuntimeError, IndexError) as exc:
            raise EdgeAgeError(f"no Pi camera found: {exc}") from None
        controls = {"FrameRate": fps} if fps else {}
        config = self.camera.create_video_configuration(
            main={"size": (width or 640, height or 480), "format": "RGB888"}, controls=controls)
        self.camera.configure(config)
        self.description, self.skipped, self.reopened, self.fps = "Pi camera", [], 0, fps

    def frames(self) -> Iterator[Frame]:
        self.camera.start()
        try:
            for index in range(sys.maxsize):
                start = time.perf_counter()
                image = self.camera.capture_array()  # "RGB888" is laid out B, G, R in memory
                yield Frame(index, time.time(), image, time.perf_counter() - start)
        finally:
            self.camera.stop()


def open_source(spec: str, width: int | None = None, height: int | None = None, fps: float | None = None, *,
                loop: bool = False):
    """The source named by ``spec``: a camera index, ``picamera``, a stream URL, a video, an image or a folder;
    ``loop`` starts a video file again at its end."""
    if spec.isdigit():
        return VideoSource(int(spec), width, height, fps, loop=loop)
    if spec.lower() in PICAMERA or spec.startswith(STREAM_PREFIXES):
        if loop:
            raise EdgeAgeError(f"{{}} rewinds video files; {literal(spec)} is a camera or a stream", option="--loop",
                               parameter="loop=True")
        return PiCameraSource(width, height, fps) if spec.lower() in PICAMERA else VideoSource(spec, width, height, fps)
    path = Path(spec)
    if not path.exists():
        raise EdgeAgeError(f"source {spec} is not a camera index, a stream URL or an existing file or folder")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        if loop:
            raise EdgeAgeError(f"{{}} rewinds video files; {literal(spec)} is an image or a folder", option="--loop",
                               parameter="loop=True")
        return ImageSource(path)
    return VideoSource(str(path), loop=loop)


class LatestFrames:
    """Reads a source on a thread into a queue of ``depth`` frames; a full queue drops its oldest frame
    for live sources (never lag behind the camera) and waits for files (every frame is processed)."""

    _END = object()

    def __init__(self, source, depth: int = 2):
        self.source, self.queue, self.dropped = source, queue.Queue(maxsize=depth), 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, name="capture", daemon=True)
        self.thread.start()

    def _put(self, item) -> None:
        drop = self.source.live and item is not self._END
        while not self.stopping.is_set():
            try:
                self.queue.put(item, block=not drop, timeout=None if drop else 0.1)
                return
            except queue.Full:
                if drop:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def _read(self) -> None:
        try:
            for frame in self.source.frames():
                if self.stopping.is_set():
                    break
                self._put(frame)
        except BaseException as exc:  # handed to the consumer, raised there
            self.error = exc
        self._put(self._END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self.queue.get()
            if item is self._END:
                if self.error:
                    raise self.error
                return
            yield item

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
