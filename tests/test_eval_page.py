"""`edge-age evaluate --out`: the evaluation page on a few hundred real faces, written as one set, in a browser."""
from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pytest

from edge_age.data.scenes import background, make_photos
from firmware_host.files import atomic
from tests.browser import Browser
from tests.conftest import UTK64, copy_slice, run_cli, sample_names
from tests.scenes import YUNET, chips

PLOTS = ("confusion.png", "gender_roc.png", "predicted_vs_true.png", "error_by_age.png", "error_by_group.png")


@pytest.fixture(scope="module")
def model(member_tflite):
    return member_tflite


@pytest.fixture(scope="module")
def faces300(tmp_path_factory):
    return copy_slice(UTK64, tmp_path_factory.mktemp("faces300"), sample_names(UTK64, 300))


@pytest.fixture(scope="module")
def page(model, faces300, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "eval"
    proc = run_cli("evaluate", model, "--data", faces300, "--out", out, "--json", out / "metrics.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_page_holds_every_section_embedded(page, faces300):
    result = json.loads((page / "metrics.json").read_text())
    html = (page / "report.html").read_text()
    for name in ("report.md", *PLOTS, "samples.jpg", "worst_errors.jpg"):
        assert (page / name).stat().st_size > 1000, name
    for section in ("summary", "confusion", "roc", "predicted", "errors", "samples", "worst"):
        assert f"<section id='{section}'>" in html, section
    assert html.count("src='data:image/png;base64,") == len(PLOTS)
    assert "http://" not in html and "https://" not in html and "src='/" not in html and 'src="' not in html
    assert f"<td>{result['n']:,}</td>" in html and f"<td>{result['mae']:.2f}</td>" in html
    groups = [g for g, v in result["breakdown"]["age_group"].items() if v["n"]]
    assert html.count("<div class='group'>") == len(groups)
    faces = re.findall(r"<div class='face[^']*' title='([^']+)'><img alt='[^']+' src='data:image/jpeg;base64,", html)
    assert len(faces) == sum(min(8, result["breakdown"]["age_group"][g]["n"]) for g in groups) + 24
    assert all((faces300 / name).is_file() for name in faces)
    md = (page / "report.md").read_text()
    worst = [line.split(" | ") for line in md.split("## Largest errors")[1].splitlines() if line.startswith("| ")][1:]
    errors = [abs(float(row[3])) for row in worst]
    assert len(worst) == 24 and errors == sorted(errors, reverse=True)
    assert all((faces300 / row[0][2:]).is_file() for row in worst)
    assert "![confusion](confusion.png)" in md and "![samples](samples.jpg)" in md
    assert (page / "metrics.json").is_file()  # written after the page, kept in its folder
    assert not [p for p in page.parent.iterdir() if p.name.startswith(".staging")]  # no staging folder left


def test_pages_are_swapped_in_as_one_set(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    for name, text in (("report.html", "old"), ("roc.png", "old plot"), ("notes.txt", "mine")):
        (out / name).write_text(text)
    with atomic.file_set(out, "evaluation") as stage:
        (stage / "report.html").write_text("new")
        (stage / "roc.png").write_text("new plot")
        assert (out / "report.html").read_text() == "old"  # nothing changes until the set is complete
    listed = [".evaluation.files", "notes.txt", "report.html", "roc.png"]
    assert sorted(p.name for p in out.iterdir()) == listed
    assert (out / "report.html").read_text() == "new" and (out / "roc.png").read_text() == "new plot"
    assert (out / "notes.txt").read_text() == "mine"

    with pytest.raises(RuntimeError), atomic.file_set(out, "evaluation") as stage:
        (stage / "report.html").write_text("half")
        raise RuntimeError("failed half-way")
    assert (out / "report.html").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == listed  # no staging left

    # a set without the plot: the old plot goes, the user's file stays
    with atomic.file_set(out, "evaluation") as stage:
        (stage / "report.html").write_text("newer")
    assert sorted(p.name for p in out.iterdir()) == [".evaluation.files", "notes.txt", "report.html"]


def test_page_of_raw_photos_shows_those_without_a_face(model, tmp_path):
    photos = tmp_path / "photos"
    labels = make_photos(chips(6, seed=5), photos, seed=5)
    rows = list(csv.reader(labels.read_text().splitlines()))
    for i in range(2):
        cv2.imwrite(str(photos / f"empty_{i}.jpg"), background((640, 480), np.random.default_rng(i)))
        rows.append([f"empty_{i}.jpg", "30", "1"] + [""] * (len(rows[0]) - 3))
    labels.write_text("\n".join(",".join(r) for r in rows) + "\n")
    out = tmp_path / "page"
    proc = run_cli("evaluate", model, "--data", photos, "--labels", labels, "--detect", "--detector", "yunet",
                   "--detector-model", YUNET, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (out / "report.html").read_text()
    missed = html.split("<section id='no-face'>")[1]
    found = int(re.search(r"yunet: a face in (\d) of 8 photos", html).group(1))
    assert 5 <= found <= 6 and f"found no face in {8 - found} of 8 photos" in missed
    assert missed.count("<div class='face photo' title='empty_") == 2 and "data:image/jpeg;base64," in missed


def test_page_in_a_real_browser(page, tmp_path):
    """Chromium renders the page from disk: every image decodes, nothing is fetched from the network."""
    with Browser(1280, 2000) as browser:
        browser.open((page / "report.html").as_uri())
        images = browser.wait_for("[...document.images].every(i => i.complete) && document.images.length")
        assert images >= len(PLOTS) + 24
        assert browser.evaluate("[...document.images].filter(i => i.naturalWidth === 0).length") == 0
        assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
        browser.screenshot(tmp_path / "report.png")
