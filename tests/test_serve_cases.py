"""What a server on a shop's network meets (issue 22), on loopback, bounded in count and time: a 100 MB body, a PNG
whose header claims 30000x30000, slowloris connections, 200 concurrent clients, clients that leave mid-upload and
mid-answer, 1000 requests on one kept-alive connection, SIGTERM with 10 requests in flight, and `run --serve`
stopped by SIGTERM while a client reads its MJPEG stream; the server's threads and open files return to their idle
counts. The model is the bundled member n; no TensorFlow in the server."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from edge_age.bench.soak import free_port, wait_for_stream
from edge_age.data.scenes import make_photos, make_video
from firmware_host.sinks.mjpeg import BOUNDARY
from tests.conftest import ROOT, UTK64
from tests.scenes import chips, without_tensorflow
from tests.test_serve import Server

MODEL = ROOT / "edge_age" / "family" / "n" / "age_gender_int8-qat.tflite"


def counts(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of process ``pid``, from /proc."""
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid: int, idle: tuple[int, int], seconds: float = 30) -> tuple[int, int]:
    """The counts of ``pid`` once they are back at ``idle`` (or what they are after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while (now := counts(pid)) != idle and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


@pytest.fixture(scope="module")
def no_tf(tmp_path_factory):
    return without_tensorflow(tmp_path_factory.mktemp("blocked"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("photos")
    make_photos(chips(1, seed=5), folder, seed=5, grey_every=0)
    return sorted(folder.glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def chip() -> bytes:
    """A real 64x64 face chip as JPEG bytes: the cheapest real photo, for the cases that send many."""
    return cv2.imencode(".jpg", cv2.imread(str(sorted(UTK64.iterdir())[0])))[1].tobytes()


@pytest.fixture(scope="module")
def server(no_tf, photo):
    """One server for the cases below, warmed by requests on both workers at once; its idle thread and fd
    counts are taken then."""
    running = Server(MODEL, no_tf, "--queue", "256", "--timeout", "300")
    with ThreadPoolExecutor(4) as pool:
        assert [status for status, _ in pool.map(lambda _: running.predict(photo), range(4))] == [200] * 4
    running.idle = settle(running.proc.pid, (-1, -1), seconds=1)
    yield running
    running.stop()


def connect(server) -> socket.socket:
    host, port = server.url.split("//")[1].split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def head(length: int, path: str = "/predict", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n"
            f"{extra}\r\n").encode()


def answer_of(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one answer on ``sock`` (read until the server closes or the body is complete)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and an IHDR chunk that claim ``width`` x ``height``, then a few bytes of nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * 64


def test_a_100_mb_body_is_413_json_and_the_next_photo_is_answered(server, photo):
    size = 100 * 2**20

    def send(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the server answers and closes before the whole body is in
            for _ in range(size // 2**20):
                sock.sendall(b"\xff" * 2**20)

    with connect(server) as sock:
        sock.sendall(head(size))
        sender = threading.Thread(target=send, args=(sock,), daemon=True)
        sender.start()  # the body goes on while the answer is read
        status, answer = answer_of(sock)
    sender.join(60)
    assert status == 413 and "limit" in answer["error"], answer
    assert server.predict(photo)[0] == 200


def test_a_png_header_claiming_30000_squared_is_400_json(server, photo):
    status, answer = server.predict(png_claiming(30000, 30000))
    assert status == 400 and "more pixels than the limit" in answer["error"], answer
    assert server.predict(photo)[0] == 200


def test_twenty_slowloris_connections_do_not_stop_a_photo(server, photo):
    slow = [connect(server) for _ in range(20)]
    try:
        for i, sock in enumerate(slow):  # half a request line each, then nothing
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"POS")
        for _ in range(3):
            status, answer = server.predict(photo)
            assert status == 200 and len(answer["faces"]) == 1
            for sock in slow:
                sock.sendall(b"X")  # a byte now and then keeps each one open
    finally:
        for sock in slow:
            sock.close()


def test_two_hundred_concurrent_clients_are_all_answered(server, chip):
    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda _: server.predict(chip), range(200)))
    assert [status for status, _ in answers] == [200] * 200
    assert len({json.dumps(a["faces"]) for _, a in answers}) == 1  # the same answer for each


def test_clients_that_leave_mid_upload_and_mid_answer(server, photo):
    for _ in range(10):
        with connect(server) as sock:  # mid-upload: half the body, then gone
            sock.sendall(head(len(photo)) + photo[: len(photo) // 2])
        with connect(server) as sock:  # mid-answer: the whole request, then gone before reading (a reset)
            sock.sendall(head(len(photo), "/predict?annotate=1") + photo)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    status, answer = server.predict(photo)
    assert status == 200 and len(answer["faces"]) == 1
    assert "Traceback" not in "\n".join(server.lines)


def test_a_thousand_requests_on_one_kept_alive_connection(server, chip):
    host, port = server.url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    statuses, sockets = [], set()
    for _ in range(1000):
        connection.request("POST", "/predict", chip, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        json.loads(response.read())
        statuses.append(response.status)
        sockets.add(connection.sock.getsockname())  # http.client opens another only if the server closed this one
    connection.close()
    assert statuses == [200] * 1000 and len(sockets) == 1


def test_threads_and_open_files_return_to_idle(server):
    """Last in this file: after every case above, the server's threads and fds are back at their idle counts."""
    assert settle(server.proc.pid, server.idle) == server.idle
    assert server.healthy()


def read_by_server(socks: list[socket.socket]) -> bool:
    """Whether the server has taken in all that was sent on ``socks`` (its side's receive queues are empty in
    /proc/net/tcp): its requests have then begun there."""
    ours = {f"{sock.getsockname()[1]:04X}" for sock in socks}
    queues = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, _, queue = line.split()[1:5]
        if remote.split(":")[1] in ours:
            queues[remote] = int(queue.split(":")[1], 16)
    return len(queues) == len(socks) and not any(queues.values())


def test_sigterm_with_ten_requests_in_flight_answers_all_ten(no_tf, photo):
    server = Server(MODEL, no_tf, "--threads", "1")
    socks = [connect(server) for _ in range(10)]
    for sock in socks:  # each request in, but for its last byte: in flight when SIGTERM comes
        sock.sendall(head(len(photo)) + photo[:-1])
    deadline = time.monotonic() + 120
    while not read_by_server(socks):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server.proc.send_signal(signal.SIGTERM)
    for sock in socks:
        sock.sendall(photo[-1:])
    answers = [answer_of(sock) for sock in socks]
    for sock in socks:
        sock.close()
    assert [status for status, _ in answers] == [200] * 10
    assert server.proc.wait(timeout=60) == 0
    assert "Traceback" not in "\n".join(server.lines)


def test_run_serve_stopped_by_sigterm_while_a_client_reads_the_stream(tmp_path):
    video = make_video(chips(1, seed=3), tmp_path / "face.avi", frames=10, size=(320, 240))
    port = free_port()
    run = subprocess.Popen([sys.executable, "-m", "edge_age", "run", "-m", str(MODEL), "-s", str(video), "--loop",
                            "--serve", str(port), "--max-fps", "20", "--threads", "1", "--out", str(tmp_path / "run")],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/"
    wait_for_stream(base, run)
    got, ended = [], threading.Event()

    def read():
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            while chunk := sock.recv(65536):
                got.append(chunk)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while b"".join(got).count(f"--{BOUNDARY}".encode()) < 5:
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    assert ended.wait(30)  # the stream ended for the client: no hanging reader
    report = json.loads((tmp_path / "run" / "run_report.json").read_text())
    assert report["status"] == "stopped" and report["frames"] >= 5
