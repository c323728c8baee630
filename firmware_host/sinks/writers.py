"""Where a run's results go: annotated video, JSONL records, a window when a display exists."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import to_json


class VideoSink:
    """Annotated frames to a video file, written beside it and moved into place when the run ends, if it holds
    every frame: OpenCV's writer does not report a failed write (a full disk), so the file is counted at the end."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer, self.frames = Path(path), fps, None, 0
        self.tmp = atomic.begin(self.path)

    def write(self, image: np.ndarray, record: dict | None = None) -> None:
        if self.writer is None:
            fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size)
            if not self.writer.isOpened():
                self.close(ok=False)
                raise EdgeAgeError(f"OpenCV cannot write {self.path.suffix} video to {self.path}; try .avi")
        if (image.shape[1], image.shape[0]) != self.size:  # images of a folder may differ in size
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # not a warning a frame on a full disk
        try:
            self.writer.write(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        finally:
            cv2.utils.logging.setLogLevel(level)
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.tmp is not None:
            tmp, self.tmp = self.tmp, None
            written = _frames_in(tmp) if ok and self.frames else 0
            if ok and self.frames and written == self.frames:
                atomic.commit(tmp, self.path)
                return
            atomic.discard(tmp)
            if ok and self.frames:
                raise EdgeAgeError(f"cannot write {self.path}: {written} of its {self.frames} frames reached the "
                                   "file (is the disk full?)")


def _frames_in(path: Path) -> int:
    """How many frames the video file ``path`` holds, by its index (0 when it has none: a truncated file)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


class JsonlSink:
    """One JSON record per frame, flushed as it goes into a file beside ``path`` that replaces it when
    the run ends (a hard kill leaves every finished line in that ``.part`` file, and the old file intact)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp, self.failed = atomic.begin(self.path), False
        self.file = self.tmp.open("w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, record: dict) -> None:
        try:
            self.file.write(to_json(record, compact=True) + "\n")
            self.file.flush()
        except OSError as exc:  # a full disk: the partial file is removed when the run closes
            self.failed = True
            raise atomic.output_error(self.path, exc) from None

    def close(self, ok: bool = True) -> None:
        try:
            self.file.close()
        except OSError:
            self.failed = True
        if ok and not self.failed:
            atomic.commit(self.tmp, self.path)
        else:
            atomic.discard(self.tmp)


def display_available() -> bool:
    """A window can open: a desktop session on Linux, always elsewhere."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink:
    """An OpenCV window; pressing q or Esc ends the run."""

    def __init__(self, title: str = "edge-age"):
        self.title, self.quit = title, False

    def write(self, image: np.ndarray, record: dict | None = None) -> None:
        try:
            cv2.imshow(self.title, image)
            self.quit = cv2.waitKey(1) & 0xFF in (ord("q"), 27)
        except cv2.error:
            raise EdgeAgeError("this OpenCV build has no GUI (opencv-python-headless): drop {}, "
                               "use {} to watch in a browser", option=("--show", "--serve"),
                               parameter=("show", "serve")) from None

    def close(self, ok: bool = True) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
