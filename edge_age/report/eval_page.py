"""The evaluation page of ``edge-age evaluate --out``: a self-contained report.html, report.md and its PNGs."""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_age import __version__
from edge_age.data.split import AGE_BINS, age_bin, age_bin_label
from edge_age.eval.evaluation import Labelled
from edge_age.eval.metrics import group_accuracy
from edge_age.report import eval_plots
from edge_age.report import train_plots as plots
from edge_age.report.bench_page import breakdown_sections
from edge_age.report.page import Section, image_uri, pyplot, to_html, to_markdown
from firmware_host.files import atomic

SAMPLES_PER_GROUP = 8
WORST = 24
MISSED_SHOWN = 48
PHOTO_WIDTH = 200


@dataclass
class Evaluated:
    """What the page shows: the scores, each face's prediction, and what was evaluated on what."""

    result: dict
    pred_age: np.ndarray
    pred_gender: np.ndarray
    faces: Labelled
    data: str
    selection: str
    photos: Path | None = None  # the photos' folder, with --detect


def write_page(out: Path, ev: Evaluated) -> Path:
    """Write report.html, report.md and the PNGs into ``out`` as one set; return the HTML's path."""
    pyplot()  # a clear error before anything is written when matplotlib is missing
    title = f"edge-age evaluation: {Path(ev.result['model']).name}"
    with atomic.file_set(out, "evaluation") as stage:
        parts = _parts(ev, stage)
        atomic.write_text(stage / "report.md", to_markdown(title, parts))
        atomic.write_text(stage / "report.html", to_html(title, parts, _STYLE))
    return Path(out) / "report.html"


def _parts(ev: Evaluated, folder: Path) -> list[Section]:
    r, faces = ev.result, ev.faces
    groups = [age_bin_label(b) for b in range(len(AGE_BINS))]
    parts = [_summary(ev)]
    exact, one_off = group_accuracy(r["age_confusion"])
    shares = [[f"{c / max(sum(row), 1):.0%}" if c else "" for c in row] for row in r["age_confusion"]]
    parts.append(Section("Age groups", f"Rows are the true age group, columns the predicted one; each row "
                      f"sums to 100%. Accuracy over age groups: {exact:.1%} exact, {one_off:.1%} within one group.",
                      ["true \\ predicted", *groups], [[g, *row] for g, row in zip(groups, shares)],
                      [eval_plots.confusion_heatmap(r["age_confusion"], groups, folder / "confusion.png")],
                         id="confusion"))
    parts.append(_roc(ev, folder))
    parts.append(Section("Predicted against true age", "One dot per face; the line is a perfect prediction.",
                      plots=[plots.predicted_vs_true(ev.pred_age, faces.ages, folder / "predicted_vs_true.png")],
                         id="predicted"))
    errors = [plots.error_by_age_bars(ev.pred_age, faces.ages, folder / "error_by_age.png")]
    if r["breakdown"].get("gender") or r["breakdown"].get("race"):
        errors.append(eval_plots.error_by_group(r["breakdown"], folder / "error_by_group.png"))
    parts.append(Section("Error by age, gender and race", "Mean absolute error of the age; the tables below "
                      "also give the gender accuracy of each group.", plots=errors, id="errors"))
    for s in breakdown_sections({"MAE / gender accuracy": r}):
        parts.append(Section(s.title, "", s.header, s.rows, id=s.title.lower().replace(" ", "-")))
    parts.append(_samples(ev, folder))
    parts.append(_worst(ev, folder))
    if r.get("detection"):
        parts.append(_missed(ev))
    return parts


def _summary(ev: Evaluated) -> Section:
    r = ev.result
    rows = [["model", r["model"]], ["data", ev.data], ["faces", ev.selection], ["n", f"{r['n']:,}"],
            ["MAE (years)", f"{r['mae']:.2f}"], ["CS@5", f"{r['cs5']:.1%}"], ["ε-error", f"{r['epsilon_error']:.3f}"]]
    if "gender_accuracy" in r:
        auc = r.get("gender_auc")
        rows += [["gender accuracy", f"{r['gender_accuracy']:.1%}"],
                 ["gender AUC", "-" if auc is None or math.isnan(auc) else f"{auc:.3f}"]]
    exact, one_off = group_accuracy(r["age_confusion"])
    rows.append(["age-group accuracy", f"{exact:.1%} exact, {one_off:.1%} within one group"])
    if r.get("detection"):
        d = r["detection"]
        rows.append(["detection", f"{d['detector']}: a face in {d['faces_found']} of {d['photos']} photos"])
    return Section("Summary", f"Written by edge-age {__version__} on {time.strftime('%Y-%m-%d %H:%M')}. "
                "CS@5 is the share of faces within 5 years; ε-error is 1 - exp(-(pred - age)² / (2·4²)), averaged.",
                ["measure", "value"], rows, id="summary")


def _roc(ev: Evaluated, folder: Path) -> Section:
    known = ev.faces.genders >= 0
    is_female = ev.faces.genders[known] == 1
    if not (is_female.any() and (~is_female).any()):
        return Section("Gender ROC", "No ROC curve: the faces do not have both genders labelled.", id="roc")
    auc = ev.result["gender_auc"]
    return Section("Gender ROC", f"Probability of female against the true gender: AUC {auc:.3f}. The dot is the "
                "operating point of the 0.5 threshold that the reported accuracy uses.",
                plots=[eval_plots.gender_roc(ev.pred_gender[known], is_female, auc, folder / "gender_roc.png")],
                   id="roc")


def _gender(code: int) -> str:
    return {0: "M", 1: "F"}.get(int(code), "?")


def _caption(ev: Evaluated, i: int) -> str:
    female = float(ev.pred_gender[i])
    guess = f"F {female:.0%}" if female >= 0.5 else f"M {1 - female:.0%}"
    return f"true {ev.faces.ages[i]} {_gender(ev.faces.genders[i])} · pred {ev.pred_age[i]:.0f} {guess}"


def _face_html(ev: Evaluated, i: int, name: bool = False) -> str:
    error = abs(float(ev.pred_age[i]) - float(ev.faces.ages[i]))
    file = html.escape(ev.faces.files[i])
    label = html.escape(_caption(ev, i)).replace(" · ", "<br>")
    tail = f"<br><span class='file'>{file}</span>" if name else ""
    return (f"<div class='face{' bad' if error > 10 else ''}' title='{file}'><img alt='{file}' "
            f"src='{image_uri(ev.faces.images[i])}'><br>{label}{tail}</div>")


def _samples(ev: Evaluated, folder: Path) -> Section:
    """Up to SAMPLES_PER_GROUP faces of every age group, drawn with a fixed seed."""
    rng = np.random.default_rng(0)
    bins = np.array([age_bin(int(a)) for a in ev.faces.ages])
    rows = []
    for b in range(len(AGE_BINS)):
        members = np.flatnonzero(bins == b)
        if len(members):
            chosen = np.sort(rng.choice(members, min(SAMPLES_PER_GROUP, len(members)), replace=False))
            rows.append((age_bin_label(b), [int(i) for i in chosen]))
    montage = eval_plots.face_montage([(g, [(ev.faces.images[i], _caption(ev, i)) for i in idx]) for g, idx in rows],
                                      folder / "samples.jpg")
    grid = "".join(f"<div class='group'><b>{g}</b><br>{''.join(_face_html(ev, i) for i in idx)}</div>"
                   for g, idx in rows)
    return Section("Sample faces by age group",
                f"Up to {SAMPLES_PER_GROUP} faces of each true age group; red: more than 10 years off. "
                "Hover a face for its file name.", html=grid, markdown=f"![samples]({montage.name})\n", id="samples")


def _worst(ev: Evaluated, folder: Path) -> Section:
    """The largest age errors: the faces to look at first for label noise."""
    error = ev.pred_age - ev.faces.ages
    worst = [int(i) for i in np.argsort(-np.abs(error), kind="stable")[:WORST]]
    montage = eval_plots.face_montage([(f"{k + 1}-{min(k + 8, len(worst))}", [(ev.faces.images[i], _caption(ev, i))
                                                                             for i in worst[k:k + 8]])
                                       for k in range(0, len(worst), 8)], folder / "worst_errors.jpg")
    header = ["file", "true age", "predicted", "error", "true gender", "P(female)"]
    rows = [[ev.faces.files[i], int(ev.faces.ages[i]), f"{ev.pred_age[i]:.1f}", f"{error[i]:+.1f}",
             _gender(ev.faces.genders[i]), f"{ev.pred_gender[i]:.2f}"] for i in worst]
    return Section("Largest errors", f"The {len(worst)} faces with the largest age error, worst first: look "
                "here first for wrong labels.", header, rows,
                html=f"<div>{''.join(_face_html(ev, i, name=True) for i in worst)}</div>",
                markdown=f"![worst errors]({montage.name})\n", id="worst")


def _missed(ev: Evaluated) -> Section:
    """The photos where the detector found no face (left out of every score above)."""
    d = ev.result["detection"]
    missed = d["missed"]
    if not missed:
        return Section("Photos without a face found", f"{d['detector']} found a face in every photo.", id="no-face")
    tiles = []
    for name in missed[:MISSED_SHOWN]:
        image = cv2.imread(str(Path(ev.photos) / name), cv2.IMREAD_COLOR) if ev.photos else None
        if image is None:
            continue
        scale = PHOTO_WIDTH / image.shape[1]
        small = cv2.resize(image, (PHOTO_WIDTH, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        tiles.append(f"<div class='face photo' title='{html.escape(name)}'><img alt='{html.escape(name)}' "
                     f"src='{image_uri(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))}'><br>"
                     f"<span class='file'>{html.escape(name)}</span></div>")
    shown = f" (the first {MISSED_SHOWN} shown)" if len(missed) > MISSED_SHOWN else ""
    return Section("Photos without a face found",
                f"{d['detector']} found no face in {len(missed)} of {d['photos']} photos{shown}; they are left out "
                "of every score "
                "above.", ["file"], [[n] for n in missed], html=f"<div>{''.join(tiles)}</div>", id="no-face")


_STYLE = (".face{width:104px;vertical-align:top}.face img{width:96px;height:96px}"
          ".photo{width:auto}.photo img{width:200px;height:auto}.bad{color:#b00}"
          ".file{display:inline-block;max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
          "nav a{margin-right:1em}")
