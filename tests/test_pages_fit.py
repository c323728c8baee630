"""Every page the project makes, from real runs of its commands, opened in a 1280 px wide headless Chromium: no
horizontal scroll (``document.documentElement.scrollWidth``), no table that hides columns in a scroll box of its
own, and no figure whose labels overlap (``page.save_figure`` warns of any; the commands print the warning).

``run-table`` writes Markdown only, so it has no page here.
"""
from __future__ import annotations

import json

import cv2
import pytest

from tests.browser import Browser
from tests.conftest import ROOT, run_cli
from tests.scenes import without_tensorflow
from tests.serving import Server

WIDTH = 1280
FAMILY = ROOT / "edge_age" / "family"
PAGES = ("eval", "bench", "report", "convert", "audit", "serve")


def made(proc) -> None:
    """A command that wrote its page, with no overlapping labels in its figures."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "labels overlap" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def bench(faces, split, tmp_path_factory):
    """A family bench: each member's int8-qat file and one edgetpu file, 1 and 2 threads, on real faces."""
    out = tmp_path_factory.mktemp("bench")
    files = [FAMILY / m / "age_gender_int8-qat.tflite" for m in ("m", "s", "n")] + [
        FAMILY / "s" / "age_gender_edgetpu.tflite"]
    made(run_cli("bench", *files, "--data", faces, "--split", split, "--threads", "1,2", "--runs", "20", "--warmup",
                 "2", "--rounds", "1", "--name", "host", "--out", out))
    return out


@pytest.fixture()
def page(request, tmp_path):
    """The HTML page (a file's URL, or the server's) of one of PAGES, made by its command."""
    name = request.param
    if name == "eval":
        out = tmp_path / "eval"
        made(run_cli("evaluate", "s", "--data", request.getfixturevalue("faces"), "--split",
                     request.getfixturevalue("split"), "--out", out))
        yield (out / "report.html").as_uri()
    elif name == "bench":
        yield (request.getfixturevalue("bench") / "bench.html").as_uri()
    elif name == "report":
        bench = json.loads((request.getfixturevalue("bench") / "bench.json").read_text())
        other = {**bench, "device": {**bench["device"], "name": "raspberry-pi-5"}}
        (tmp_path / "pi5.json").write_text(json.dumps(other))
        made(run_cli("report", request.getfixturevalue("bench") / "bench.json", tmp_path / "pi5.json", "--out",
                     tmp_path / "report"))
        yield (tmp_path / "report" / "report.html").as_uri()
    elif name == "convert":
        yield (request.getfixturevalue("converted") / "convert_report.html").as_uri()
    elif name == "audit":
        made(run_cli("data", "audit", request.getfixturevalue("slice64"), "--out", tmp_path / "audit", "--no-cache"))
        yield (tmp_path / "audit" / "report.html").as_uri()
    else:
        server = Server("s", without_tensorflow(tmp_path / "blocked"), "--threads", "1")
        try:
            yield server.url + "/"
        finally:
            server.stop()


@pytest.mark.parametrize("page", PAGES, indirect=True)
def test_page_fits_a_1280_px_window(page, tmp_path):
    with Browser(WIDTH, 900) as browser:
        browser.open(page)
        browser.wait_for("document.readyState === 'complete' && [...document.images].every(i => i.complete)")
        if page.startswith("http"):  # the serve page fills in its models from /info
            browser.wait_for("document.getElementById('model').options.length")
        fit = browser.fit()
        shot = browser.screenshot(tmp_path / "page.png")
    assert fit["width"] == WIDTH
    assert fit["scrollWidth"] <= WIDTH and not fit["wide"], fit
    assert cv2.imread(str(shot)).shape[1] == WIDTH
