"""Capture sources, the frame queue, the tracker and the MJPEG server, on real frames and a real HTTP client."""
from __future__ import annotations

import time
import urllib.request

import cv2
import numpy as np
import pytest

from firmware_host.capture.sources import Frame, ImageSource, LatestFrames, open_source
from firmware_host.errors import EdgeAgeError
from firmware_host.sinks.mjpeg import BOUNDARY, MjpegServer, parse_address
from tests.scenes import chips


class FastCamera:
    """A live source delivering 200 numbered frames as fast as it can."""

    live, description, skipped = True, "fast camera", []

    def frames(self):
        for i in range(200):
            yield Frame(i, time.time(), np.full((4, 4, 3), i % 256, np.uint8), 0.0)
            time.sleep(0.001)


def test_live_source_drops_old_frames_never_lags():
    reader = LatestFrames(FastCamera(), depth=2)
    seen = []
    for frame in reader:
        seen.append(frame.index)
        time.sleep(0.01)  # a slow consumer
    assert reader.dropped > 50 and seen == sorted(seen) and seen[-1] == 199
    assert len(seen) + reader.dropped == 200


def test_file_sources_deliver_every_frame(tmp_path):
    for i, chip in enumerate(chips(3)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), chip.image)
    (tmp_path / "3.jpg").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageSource)
    frames = list(LatestFrames(source, depth=1))
    assert [f.name for f in frames] == ["0.png", "1.png", "2.png"] and source.skipped == ["3.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeAgeError, match="no images"):
        open_source(str(tmp_path / "empty"))


def test_mjpeg_server_answers_a_browser():
    server = MjpegServer("127.0.0.1:0")
    try:
        frame = cv2.cvtColor(chips(1)[0].image, cv2.COLOR_BGR2RGB)
        server.write(frame, {"frame": 7, "faces": []})
        page = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert "/stream.mjpg" in page
        jpeg = urllib.request.urlopen(server.url + "frame.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == frame.shape
        assert b'"frame": 7' in urllib.request.urlopen(server.url + "stats.json", timeout=5).read()
        stream = urllib.request.urlopen(server.url + "stream.mjpg", timeout=5)
        assert BOUNDARY in stream.headers["Content-Type"]
        server.write(frame, {"frame": 8})
        head = stream.read(200)
        assert head.startswith(f"--{BOUNDARY}".encode()) and b"image/jpeg" in head
        stream.close()
    finally:
        server.close()
    assert parse_address("8080") == ("127.0.0.1", 8080)
    with pytest.raises(EdgeAgeError, match="HOST:PORT"):
        parse_address("localhost:http")


def test_live_source_that_disappears_is_reopened_then_reported(tmp_path):
    from edge_age.data.scenes import make_video
    from firmware_host.capture.sources import VideoSource
    path = make_video(chips(1), tmp_path / "cam.avi", frames=5)
    source = VideoSource(str(path), retries=2, backoff_s=0.01)
    source.live = True  # behave as a camera: a failed read means the device dropped out
    frames = source.frames()
    assert len([next(frames) for _ in range(8)]) == 8 and source.reopened == 1  # came back once
    path.unlink()
    with pytest.raises(EdgeAgeError, match="disappeared: reopening it failed 2 times"):
        for _ in frames:
            pass


def test_stream_url_source_reads_our_own_mjpeg_server_and_reports_its_loss():
    """An http:// source is live: frames come in order; when the server goes away the source tries again, then says
    so."""
    import threading

    server, stop = MjpegServer("127.0.0.1:0"), threading.Event()

    def feed():
        for i in range(10_000):
            if stop.is_set():
                return
            server.write(np.full((120, 160, 3), i % 250, np.uint8), {"frame": i})
            time.sleep(0.02)

    threading.Thread(target=feed, daemon=True).start()
    source = open_source(server.url + "stream.mjpg")
    source.retries, source.backoff_s = 1, 0.01
    frames = source.frames()
    values = [int(next(frames).image[0, 0, 0]) for _ in range(5)]
    assert source.live and values == sorted(values) and len(set(values)) == 5
    stop.set()
    server.close()
    with pytest.raises(EdgeAgeError, match="disappeared: reopening it failed 1 times"):
        for _ in frames:
            pass
