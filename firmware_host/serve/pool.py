"""The work behind ``POST /predict``: decode a photo, find faces, age and gender, on a bounded pool of workers.

Each worker owns one detector and one single-threaded interpreter per model it may answer with (neither is
thread-safe), so the pool's size is the number of interpreter threads. Requests beyond the pool wait in a
bounded queue. A request names its model (``?model=``) among those the server loaded, or gets the default.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from firmware_host.capture import images
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.interpreter import check_threads
from firmware_host.infer.predictor import AgeGenderModel
from firmware_host.pipeline.estimator import AgeEstimator, EstimatorOptions
from firmware_host.pipeline.faces import largest
from firmware_host.pipeline.stages import StageTimer
from firmware_host.sinks.overlay import draw_face, label

LOG = logging.getLogger("firmware_host.serve.app")
SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason for the JSON error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def image_kind(data: bytes) -> str | None:
    """``jpeg``, ``png`` or ``webp`` from the first bytes, else None (the Content-Type is not trusted)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def decode(data: bytes) -> np.ndarray:
    """BGR pixels of an encoded image (EXIF rotation applied, alpha dropped, grey made colour), or a 400."""
    image, reason = images.decode(data, cv2.IMREAD_COLOR)
    if image is not None:
        return image
    if reason.startswith("over the pixel limit"):
        raise RequestError(400, f"the image has more pixels than the limit of {images.max_pixels()}")
    raise RequestError(400, f"the {image_kind(data)} image does not decode (damaged or truncated)")


@dataclass(frozen=True)
class Query:
    """Options of one request: detector score threshold, largest face only, annotated JPEG instead of JSON, and
    the model's name (None: the server's default)."""

    threshold: float | None = None
    largest: bool = False
    annotate: bool = False
    model: str | None = None


@dataclass
class Worker:
    estimators: dict[str, AgeEstimator]  # one per served model, all sharing one detector

    @property
    def models(self) -> dict[str, AgeGenderModel]:
        return {name: e.model for name, e in self.estimators.items()}

    @property
    def detector(self):
        return next(iter(self.estimators.values())).detector

    def predict(self, data: bytes, query: Query) -> tuple[dict, bytes | None]:
        """The faces in an encoded photo as the JSON answer (``query.model`` answers), and the annotated JPEG when
        asked for."""
        estimator = self.estimators[query.model]
        model = estimator.model
        timer = StageTimer()
        with timer.stage("decode"):
            image = decode(data)
        default = getattr(self.detector, "threshold", None)
        if query.threshold is not None:
            if default is None:
                raise RequestError(400, f"the {self.detector.name} detector has no score threshold")
            self.detector.threshold = query.threshold
        try:
            results = estimator.predict(image, timer=timer)
        finally:
            if query.threshold is not None:
                self.detector.threshold = default
        if query.largest and results:
            results = [largest(results)]
        ms = {k: round(v * 1000, 2) for k, v in timer.frame.items()}
        answer = {"faces": [{"box": [round(v, 1) for v in r.face.box], "age": round(r.prediction.age, 2),
                             "age_std": round(r.prediction.age_std, 2), "female": round(r.prediction.female, 4),
                             "score": round(r.face.score, 4)} for r in results],
                  "size": [image.shape[1], image.shape[0]], "model": query.model, "file": model.path.name,
                  "detector": self.detector.name,
                  "ms": {"decode": ms.get("decode", 0.0), "detect": ms.get("detect", 0.0),
                         "align": ms.get("preprocess", 0.0), "infer": round(ms.get("infer", 0.0)
                                                                            + ms.get("postprocess", 0.0), 2)}}
        if not query.annotate:
            return answer, None
        for r in results:
            draw_face(image, r.face.box, label(r.prediction.age, r.prediction.age_std, r.prediction.female),
                      r.prediction.female)
        return answer, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


class Pool:
    """``size`` workers on as many threads, and at most ``waiting`` requests queued for them.

    ``models`` maps each name a request may choose to its ``.tflite`` file; ``default`` answers when it names none.
    """

    def __init__(self, models: dict[str, Path], default: str, *, size: int, waiting: int, detector: str = "auto",
                 detector_model: Path | None = None, delegate: str = "cpu", library: str | None = None,
                 device: str | None = None):
        if default not in models:
            raise EdgeAgeError(f"the default model {default!r} is not among the served ones: {', '.join(models)}")
        for path in models.values():
            if Path(path).suffix != ".tflite":
                raise EdgeAgeError(f"{path} is not a .tflite file: serve a model from 'edge-age convert' "
                                   "(with its .json sidecar beside it)")
        self.workers: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for _ in range(check_threads(size)):
            first = AgeEstimator.create_from_options(EstimatorOptions(
                models[default], detector=detector, detector_model=detector_model, delegate=delegate,
                delegate_library=library, device=device))
            self.workers.put(Worker({name: first if name == default else
                                     AgeEstimator(AgeGenderModel(path, delegate, 1, library, device), first.detector)
                                     for name, path in models.items()}))
        self.first = self.workers.get()
        self.workers.put(self.first)
        self.default = default
        self.size, self.limit, self.busy = size, size + waiting, 0
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="predict")

    def model_name(self, name: str | None) -> str:
        """The served model a request asked for (the default when None), or a 400 naming those there are."""
        if name is None or name == "":
            return self.default
        if name not in self.first.models:
            raise RequestError(400, f"no model {name!r} here: choose one of {', '.join(self.first.models)}")
        return name

    async def predict(self, data: bytes, query: Query) -> tuple[dict, bytes | None]:
        """Run one photo on a free worker; 503 when the queue is full. Cancelling leaves a started job to finish."""
        if self.busy >= self.limit:
            raise RequestError(503, f"busy: {self.busy} requests in hand; try again shortly")
        query = replace(query, model=self.model_name(query.model))
        loop = asyncio.get_running_loop()
        self.busy += 1
        future = self.executor.submit(self._run, data, query)
        future.add_done_callback(lambda _: loop.is_closed() or loop.call_soon_threadsafe(self._done))
        return await asyncio.wrap_future(future)

    def _done(self) -> None:
        self.busy -= 1

    def _run(self, data: bytes, query: Query) -> tuple[dict, bytes | None]:
        worker = self.workers.get()
        try:
            return worker.predict(data, query)
        finally:
            self.workers.put(worker)

    def describe(self) -> dict:
        """The served models (``model`` is the default's), the detector and the pool's size."""
        detector = self.first.detector
        models = {name: {"file": model.path.name, "target": model.info.target, "input_size": model.size,
                         "delegate": model.delegate, "sidecar": model.info.to_dict()}
                  for name, model in self.first.models.items()}
        return {"model": {"name": self.default, **models[self.default]}, "models": models, "default": self.default,
                "detector": {"name": detector.name, "threshold": getattr(detector, "threshold", None)},
                "workers": self.size, "queue": self.limit - self.size, "cpu_count": os.cpu_count()}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
