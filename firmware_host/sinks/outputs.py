"""Annotated frames to the image sinks (video file, MJPEG server, window), on the main loop or overlapped.

With ``overlap`` a worker thread draws and encodes frame N while the main loop captures, detects and
infers frame N+1: OpenCV's drawing and encoding release the GIL, so this uses the second core. The
queue holds two frames; when it is full the main loop waits, so every frame still reaches the sinks.
"""
from __future__ import annotations

import logging
import queue
import threading

import numpy as np

from firmware_host.sinks.overlay import draw_face, draw_status, label

log = logging.getLogger(__name__)


def annotate(image: np.ndarray, faces: list[tuple], status: str) -> np.ndarray:
    """A BGR copy of ``image`` with each ``(box, text, female)`` drawn and a status line."""
    out = np.dstack([image] * 3) if image.ndim == 2 else image.copy()
    for box, text, female in faces:
        draw_face(out, box, text, female)
    draw_status(out, status)
    return out


class FrameOutputs:
    """Draws each frame's tracks and hands the frame with its record to the image sinks."""

    def __init__(self, sinks: list, overlap: bool = False):
        self.sinks, self.error = sinks, None
        self.pending: tuple | None = None
        self.queue: queue.Queue | None = queue.Queue(maxsize=2) if overlap and sinks else None
        if self.queue:
            self.thread = threading.Thread(target=self._work, name="outputs", daemon=True)
            self.thread.start()

    def draw(self, image: np.ndarray, tracks: list, status: str) -> None:
        """Take this frame's tracks (copied: the tracker changes them); draw now unless overlapped."""
        faces = [(t.box, label(t.age, t.age_std, t.female, t.id), t.female) for t in tracks]
        self.pending = (image, faces, status) if self.queue else (annotate(image, faces, status),)

    def send(self, record: dict) -> bool:
        """Write the frame drawn last with its record; True when a sink asks to stop (a window's q key)."""
        if self.queue is None:
            self._write(self.pending[0], record)
        else:
            if self.error:
                error, self.error = self.error, None
                raise error
            self.queue.put((*self.pending, record))
        return any(getattr(sink, "quit", False) for sink in self.sinks)

    def close(self) -> None:
        """Wait until the frames handed over are written (overlapped); an error not yet raised is logged."""
        if self.queue and self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.error:
            log.error("writing annotated frames failed: %s", self.error)

    def _write(self, image: np.ndarray, record: dict) -> None:
        for sink in self.sinks:
            sink.write(image, record)

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(annotate(*item[:3]), item[3])
                except Exception as exc:  # noqa: BLE001 - raised on the main loop at its next frame
                    self.error = exc
