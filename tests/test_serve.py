"""`edge-age serve` as a user runs it: a real server process (no TensorFlow), a real model and detector, real HTTP."""
from __future__ import annotations

import json
import os
import re
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from edge_age.data.scenes import background, make_photos
from edge_age.members import members
from tests.browser import Browser
from tests.conftest import ROOT, assert_user_error, run_cli
from tests.scenes import chips, without_tensorflow
from tests.serving import Server


@pytest.fixture(scope="module")
def model():
    """A real int8 file with its sidecar: the bundled member s's, given as a path."""
    return ROOT / "edge_age" / "family" / "s" / "age_gender_int8-qat.tflite"


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


def check_faces(answer: dict, size: tuple[int, int], model: str = "age_gender_int8-qat.tflite") -> None:
    assert set(answer) >= {"faces", "model", "file", "detector", "ms"} and answer["detector"] == "yunet"
    assert answer["model"] == model and answer["file"] == "age_gender_int8-qat.tflite" and answer["size"] == list(size)
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
    (tmp_path / "model.keras").write_bytes(b"a Keras model")
    assert_user_error(run_cli("serve", "-m", tmp_path / "model.keras"), "not a .tflite file")
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


@pytest.fixture(scope="module")
def family_server(no_tf):
    """A server of the bundled family: s by default, m and n on request."""
    running = Server("s", no_tf)
    yield running
    running.stop()


def test_each_request_picks_a_member_and_the_log_names_it(family_server, photos):
    start = next(line for line in family_server.lines if " on http://" in line)
    assert "serving model s (" in start and "also m, n on request" in start
    status, _, data = family_server.request("/info")
    info = json.loads(data)
    assert status == 200 and list(info["models"]) == ["m", "s", "n"] and info["default"] == "s"
    assert info["model"]["name"] == "s"
    assert {n: m["input_size"] for n, m in info["models"].items()} == {m.name: m.facts["input_size"] for m in members()}
    body = jpeg(first_photo(photos))
    answers = {}
    for query, name in (("", "s"), ("?model=m", "m"), ("?model=n&largest=1", "n"), ("?model=s", "s")):
        status, answer = family_server.predict(body, query)
        assert status == 200, answer
        check_faces(answer, (640, 480), name)
        assert len(answer["faces"]) == 1
        answers.setdefault(name, []).append(answer["faces"][0]["age"])
    assert answers["s"][0] == answers["s"][1]  # the same member gives the same age
    assert len({answers[name][0] for name in "msn"}) == 3  # three members, three models
    status, answer = family_server.predict(body, "?model=x")
    assert status == 400 and answer["error"] == "no model 'x' here: choose one of m, s, n"
    access = [line for line in family_server.lines if " POST /predict" in line]
    assert [re.search(r"model=(\w+) faces=1 ", line).group(1) for line in access[-5:-1]] == ["s", "m", "n", "s"]
    assert " 400 " in access[-1] and "faces=" not in access[-1]


def test_served_models_are_chosen_on_the_command_line(no_tf, photos, tmp_path):
    family = ROOT / "edge_age" / "family"
    for suffix in (".tflite", ".json"):  # a file of the user's own: the n member's edgetpu file under another name
        (tmp_path / f"mine{suffix}").write_bytes((family / "n" / f"age_gender_edgetpu{suffix}").read_bytes())
    server = Server("n", no_tf, "--models", f"m,{tmp_path / 'mine.tflite'}", "--threads", "1")
    try:
        info = json.loads(server.request("/info")[2])
        assert list(info["models"]) == ["n", "m", "mine.tflite"] and info["default"] == "n"
        assert info["models"]["mine.tflite"]["target"] == "edgetpu"
        status, answer = server.predict(jpeg(first_photo(photos)), "?model=mine.tflite")
        assert status == 200 and answer["model"] == "mine.tflite" and len(answer["faces"]) == 1
        assert server.predict(jpeg(first_photo(photos)), "?model=s")[0] == 400
    finally:
        assert server.stop() == 0
    assert any("model=mine.tflite faces=1" in line for line in server.lines)
    same_name = ",".join(str(family / m / "age_gender_int8-qat.tflite") for m in "ms")
    assert_user_error(run_cli("serve", "--models", same_name),
                      "two models to serve are named age_gender_int8-qat.tflite", "--models")


def test_the_page_picks_a_member(family_server, photos, tmp_path):
    """The page lists the served members, the default chosen; picking one sends it, and the answer names it."""
    with Browser(1280, 1000) as browser:
        browser.open(family_server.url + "/")
        browser.wait_for("document.getElementById('model').options.length === 3")
        assert browser.evaluate("[...document.getElementById('model').options].map(o => o.value)") == ["m", "s", "n"]
        assert browser.evaluate("document.getElementById('model').value") == "s"
        browser.evaluate("const pick = document.getElementById('model'); pick.value = 'm';"
                         "pick.dispatchEvent(new Event('change'))")
        assert browser.evaluate("document.getElementById('about').textContent").startswith("Model m: ")
        browser.set_file("#file", sorted(photos.glob("*.jpg"))[0])
        browser.wait_for("document.querySelector('#faces li')?.textContent")
        status = browser.evaluate("document.getElementById('status').textContent")
        assert "model m (age_gender_int8-qat.tflite)" in status
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1280
    assert any("POST /predict?model=m 200 " in line for line in family_server.lines)


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
