"""`edge-age serve` as a user runs it: a real server process (no TensorFlow), a real model and detector, real HTTP."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from edge_age.data.scenes import background, make_photos
from edge_age.members import member
from tests.browser import Browser
from tests.conftest import ROOT, assert_user_error, run_cli
from tests.scenes import YUNET, chips, without_tensorflow


class Server:
    """``python -m edge_age serve`` on a free loopback port; its log lines are collected as they come."""

    def __init__(self, model, env: dict, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_age", "serve", "-m", str(model), "--port", "0",
                                      "--detector", "yunet", "--detector-model", str(YUNET), *args],
                                     cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = time.monotonic() + 300  # a loaded 2-core machine starts TF-free LiteRT slowly
        while not any(" on http://" in line for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.1)
        self.url = next(line for line in self.lines if " on http://" in line).split(" on ")[-1].rstrip("/")

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def request(self, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body) of one request; error statuses are answers too."""
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {},
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def predict(self, body: bytes, query: str = "", headers: dict | None = None) -> tuple[int, dict]:
        status, _, data = self.request("/predict" + query, body, headers)
        assert self.healthy()
        return status, json.loads(data)

    def healthy(self) -> bool:
        status, _, data = self.request("/health")
        return status == 200 and json.loads(data)["status"] == "ok"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def model(member_tflite):
    return member_tflite


@pytest.fixture(scope="module")
def no_tf(tmp_path_factory):
    return without_tensorflow(tmp_path_factory.mktemp("blocked"))


@pytest.fixture(scope="module")
def server(model, no_tf):
    running = Server(model, {**no_tf, "OPENCV_IO_MAX_IMAGE_PIXELS": str(2_000_000)}, "--max-body", "1")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two 640x480 photos with one real face each (made from the shared chips), as JPEG bytes, and their folder."""
    folder = tmp_path_factory.mktemp("photos")
    make_photos(chips(2, seed=11), folder, seed=11, grey_every=0)
    return folder


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def first_photo(photos) -> np.ndarray:
    return cv2.imread(str(sorted(photos.glob("*.jpg"))[0]))


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def check_faces(answer: dict, size: tuple[int, int]) -> None:
    assert set(answer) >= {"faces", "model", "detector", "ms"} and answer["detector"] == "yunet"
    assert answer["model"] == "age_gender_int8-qat.tflite" and answer["size"] == list(size)
    assert set(answer["ms"]) >= {"decode", "detect", "infer"} and all(v >= 0 for v in answer["ms"].values())
    for face in answer["faces"]:
        assert set(face) == {"box", "age", "age_std", "female", "score"}
        x, y, w, h = face["box"]
        assert -w / 2 < x < size[0] and -h / 2 < y < size[1] and 20 < w < size[0]
        assert 0 <= face["age"] <= 116 and face["age_std"] >= 0 and 0 <= face["female"] <= 1 and face["score"] > 0


def test_a_face_photo_as_body_and_as_multipart(server, photos):
    image = first_photo(photos)
    status, answer = server.predict(jpeg(image), headers={"Content-Type": "image/jpeg"})
    assert status == 200, answer
    check_faces(answer, (640, 480))
    assert len(answer["faces"]) == 1
    body, headers = multipart("image", "photo.jpg", jpeg(image))
    status, again = server.predict(body, headers=headers)
    assert status == 200 and again["faces"] == answer["faces"]
    body, headers = multipart("upload", "photo.jpg", jpeg(image))  # any file field will do
    assert server.predict(body, headers=headers)[1]["faces"] == answer["faces"]
    status, headers, data = server.request("/predict?annotate=1", jpeg(image))
    annotated = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and headers["X-Faces"] == "1"
    assert annotated.shape == image.shape


def test_query_options(server, photos):
    pair = np.hstack([cv2.imread(str(p)) for p in sorted(photos.glob("*.jpg"))])  # two faces, 1280x480
    status, both = server.predict(jpeg(pair))
    assert status == 200 and len(both["faces"]) == 2
    check_faces(both, (1280, 480))
    status, one = server.predict(jpeg(pair), "?largest=1")
    biggest = max(both["faces"], key=lambda f: f["box"][2] * f["box"][3])
    assert status == 200 and one["faces"] == [biggest]
    assert server.predict(jpeg(pair), "?threshold=0.9999")[1]["faces"] == []
    low = server.predict(jpeg(pair), "?threshold=0.3")[1]["faces"]
    assert len(low) >= 2 and all(f["score"] >= 0.3 for f in low)
    assert server.predict(jpeg(pair))[1]["faces"] == both["faces"]  # the worker's threshold is back to its default
    status, answer = server.predict(jpeg(pair), "?threshold=high")
    assert status == 400 and "threshold" in answer["error"]


def test_other_images_and_bad_bodies(server, photos):
    image = first_photo(photos)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    rgba[:, :80, 3] = 0  # transparent strip
    for body in (cv2.imencode(".png", rgba)[1].tobytes(), jpeg(grey), cv2.imencode(".webp", image)[1].tobytes()):
        status, answer = server.predict(body)
        assert status == 200 and len(answer["faces"]) == 1, answer
    no_face = background((640, 480), np.random.default_rng(0))
    status, answer = server.predict(jpeg(no_face))
    assert status == 200 and answer["faces"] == [], answer

    status, answer = server.predict(b"")
    assert status == 400 and "empty" in answer["error"]
    status, answer = server.predict(os.urandom(5000))
    assert status == 415 and "not a JPEG, PNG or WebP" in answer["error"]
    status, answer = server.predict(b"name,age\nx.jpg,30\n", headers={"Content-Type": "image/jpeg"})
    assert status == 415
    status, answer = server.predict(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    assert status == 400 and "does not decode" in answer["error"]
    status, answer = server.predict(jpeg(image)[:20])
    assert status == 400 and "does not decode" in answer["error"]
    status, answer = server.predict(cv2.imencode(".png", np.zeros((1500, 1500, 3), np.uint8))[1].tobytes())
    assert status == 400 and "more pixels than the limit of 2000000" in answer["error"]
    status, answer = server.predict(b"\xff\xd8\xff" + os.urandom(1_500_000))  # the server's limit is 1 MB
    assert status == 413 and "limit" in answer["error"]
    body, headers = multipart("image", "notes.txt", b"just text")
    assert server.predict(body, headers=headers)[0] == 415
    status, answer = server.predict(b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n",
                                    headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and "no file field" in answer["error"]
    assert server.request("/predict")[0] == 405
    assert server.request("/nothing")[0] == 404


def test_twenty_concurrent_requests(server, photos):
    body = jpeg(first_photo(photos))
    expected = server.predict(body)[1]["faces"]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: server.predict(body), range(20)))
    assert all(status == 200 and answer["faces"] == expected for status, answer in answers)


def test_page_info_and_health(server, model):
    status, headers, page = server.request("/")
    page = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'type="file"' in page and "getUserMedia" in page and "/predict" in page and "drop" in page
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\(""", page)  # nothing loaded from elsewhere
    assert set(re.findall(r'fetch\("([^"?]+)', page)) == {"/predict", "/info"}
    status, _, data = server.request("/info")
    info = json.loads(data)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert status == 200 and info["model"]["sidecar"] == sidecar and info["model"]["file"] == model.name
    assert info["detector"]["name"] == "yunet" and info["workers"] == 2 and info["max_body_bytes"] == 2**20
    assert {"starlette", "uvicorn", "numpy", "python"} <= set(info["versions"])


def test_sigterm_stops_cleanly_with_one_log_line_per_request(model, no_tf, photos):
    server = Server(model, no_tf, "--threads", "1")
    body = jpeg(first_photo(photos))
    assert server.predict(body)[0] == 200  # and a /health
    assert server.predict(b"")[0] == 400  # and a /health
    assert server.stop() == 0
    access = [line for line in server.lines if " /predict" in line or " /health" in line]
    assert len(access) == 4, server.lines
    assert " POST /predict 200 " in access[0] and "faces=1" in access[0] and f"in={len(body)}B" in access[0]
    assert " GET /health 200 " in access[1] and " POST /predict 400 " in access[2]
    assert "Traceback" not in "\n".join(server.lines)


def test_serve_errors_are_one_line(model, tmp_path):
    (tmp_path / "uvicorn").mkdir()
    (tmp_path / "uvicorn" / "__init__.py").write_text("raise ImportError('uvicorn is not installed here')\n")
    assert_user_error(run_cli("serve", "-m", model, env={"PYTHONPATH": str(tmp_path)}), "pip install 'edge-age[serve]'")
    assert_user_error(run_cli("serve", "-m", member("m").keras("float")), "not a .tflite file")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(model.read_bytes())
    assert_user_error(run_cli("serve", "-m", bare), "bare.json is missing")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert_user_error(run_cli("serve", "-m", model, "--detector", "haar", "--port", port),
                          f"cannot serve on 127.0.0.1:{port}")


def test_page_in_a_real_browser(server, photos, tmp_path):
    """Headless Chromium loads /, a face photo goes in through the file input, the page shows its age."""
    with Browser(1100, 1000) as browser:
        browser.open(server.url + "/")
        browser.wait_for("document.getElementById('about').textContent.includes('age_gender_int8-qat')")
        browser.set_file("#file", sorted(photos.glob("*.jpg"))[0])
        text = browser.wait_for("document.querySelector('#faces li')?.textContent")
        assert text.startswith("age ") and "male" in text  # "female" or "male"
        age = float(text.split()[1])
        assert 0 <= age <= 116
        assert browser.evaluate("document.getElementById('canvas').width") == 640
        assert "1 face(s)" in browser.evaluate("document.getElementById('status').textContent")
        shot = browser.screenshot(tmp_path / "serve_page.png")
    assert cv2.imread(str(shot)).shape[1] == 1100


def test_load_script_reports_latency(server, photos):
    from firmware_host.serve.load import load
    result = load(server.url + "/predict", jpeg(first_photo(photos)), clients=3, seconds=2)
    assert result["requests"] >= 3 and result["statuses"] == {"200": result["requests"]}
    latency = result["latency_200"]
    assert latency["count"] == result["requests"] and latency["p99_ms"] >= latency["p50_ms"] > 0


def test_the_listening_socket_is_tcp_so_answers_are_not_held_by_nagle():
    """asyncio turns Nagle off only on sockets whose protocol is TCP; with proto 0 a kept-alive client waited
    40 ms (its delayed ACK) for every answer after the first."""
    import socket

    from firmware_host.serve.app import bind
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
