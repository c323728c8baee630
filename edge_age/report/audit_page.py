"""The audit's outputs: ``audit.json``, ``report.md``, a self-contained ``report.html`` and PNG plots."""
from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import numpy as np

from edge_age.data.audit import Audit
from edge_age.data.names import GENDERS, MAX_AGE, RACES
from edge_age.data.split import SIDES, Split
from edge_age.report.page import data_uri, html_page, html_table, image_uri, md_table, pyplot, save_figure
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json

GENDER_NAMES = {0: "male", 1: "female", -1: "unknown"}
RACE_NAMES = {**dict(enumerate(RACES)), -1: "unknown"}


def audit_json(audit: Audit) -> dict:
    """Counts plus every anomaly by name."""
    faces = audit.faces
    names = faces.names

    def group(g: list[int]) -> dict:
        return {"files": [names[i] for i in g],
                "labels": [[faces.labels[i].age, faces.labels[i].gender, faces.labels[i].race] for i in g]}

    return {
        **audit.summary(),
        "data": str(faces.root),
        "malformed_names": [{"file": n, "issues": list(lab.issues), "set_aside": lab.reason}
                            for n, lab in zip(names, faces.labels) if lab.malformed],
        "unreadable_files": [{"file": n, "reason": r} for n, r in faces.unreadable],
        "ignored_files": faces.ignored,
        "conflicting": [group(g) for g in audit.conflicting],
        "duplicates": [group(g) for g in audit.exact_groups],
        "near_duplicates": [group(g) for g in audit.near_groups],
    }


def _plots(audit: Audit, split: Split | None, out: Path) -> dict[str, Path]:
    plt = pyplot()
    labels = [lab for lab in audit.faces.labels if lab.usable]
    ages = np.array([lab.age for lab in labels])
    genders = np.array([lab.gender for lab in labels])
    bins = np.arange(0, MAX_AGE + 2)
    paths = {}

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.hist(ages, bins=bins, color="#4477aa")
    ax.set(xlabel="age (years)", ylabel="images", title=f"Age histogram ({len(ages):,} images)")
    paths["age_histogram"] = save_figure(fig, out / "age_histogram.png")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2), width_ratios=(1, 2), layout="constrained")
    g = Counter(lab.gender for lab in labels)
    ax1.bar([GENDER_NAMES[k] for k in sorted(g)], [g[k] for k in sorted(g)], color=["#4477aa", "#ee6677"][:len(g)])
    ax1.set(title="Gender", ylabel="images")
    r = Counter(lab.race for lab in labels)
    ax2.bar([RACE_NAMES[k] for k in sorted(r)], [r[k] for k in sorted(r)], color="#228833")
    ax2.set(title="Race")
    plt.setp(ax2.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
    paths["gender_race"] = save_figure(fig, out / "gender_race.png")

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for code, colour in ((0, "#4477aa"), (1, "#ee6677")):
        ax.hist(ages[genders == code], bins=bins, alpha=0.6, color=colour, label=GENDERS[code])
    ax.set(xlabel="age (years)", ylabel="images", title="Age by gender")
    ax.legend()
    paths["age_by_gender"] = save_figure(fig, out / "age_by_gender.png")

    if split is not None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
        for ax, side in zip(axes, SIDES):
            rows = split.side(side)
            ax.hist([row.age for row in rows], bins=np.arange(0, MAX_AGE + 5, 5), density=True, color="#aa3377")
            ax.set(title=f"{side} ({len(rows):,})", xlabel="age (years)")
        axes[0].set_ylabel("share per year")
        paths["split_ages"] = save_figure(fig, out / "split_ages.png")
    return paths


def _count_rows(summary: dict) -> list[list]:
    return [[k, v] for k, v in summary.items() if isinstance(v, int)]


def _faces_html(audit: Audit, group: list[int]) -> str:
    faces = audit.faces
    cells = []
    for i in group:
        lab = faces.labels[i]
        caption = (f"age {lab.age}, {GENDER_NAMES[lab.gender]}, {RACE_NAMES[lab.race]}" if lab.usable
                   else "labels unreadable")
        cells.append(f"<div class='face'><img src='{image_uri(faces.images[i])}'><br>{html.escape(caption)}"
                     f"<br><code>{html.escape(faces.names[i])}</code></div>")
    return "<div class='group'>" + "".join(cells) + "</div>"


def write_audit_report(audit: Audit, out: Path, split: Split | None = None) -> dict:
    """Write every audit output into ``out``, replacing the previous report as one set; return the
    ``audit.json`` content."""
    with atomic.file_set(out, "audit") as staging:
        return _write_audit_files(audit, staging, split)


def _write_audit_files(audit: Audit, out: Path, split: Split | None) -> dict:
    data = audit_json(audit)
    plots = _plots(audit, split, out)
    summary = audit.summary()
    rule = summary["near_duplicate_rule"]
    rule_text = (f"Near-duplicates: {rule['hash']} within {rule['max_hamming_bits']} bits, confirmed by a grey "
                 f"32x32 thumbnail correlation of at least {rule['min_grey_correlation']}.")
    malformed = [[m["file"], "; ".join(m["issues"]) or "", m["set_aside"] or "kept"] for m in data["malformed_names"]]
    unreadable = [[u["file"], u["reason"]] for u in data["unreadable_files"]]

    md = ["# Data audit of "
          f"`{audit.faces.root}`\n", md_table(["count", "value"], _count_rows(summary)), rule_text + "\n"]
    md += [f"![{k}]({p.name})\n" for k, p in plots.items()]
    if malformed:
        md += ["## Malformed names\n", md_table(["file", "issues", "set aside"], malformed)]
    if unreadable:
        md += ["## Unreadable files\n", md_table(["file", "reason"], unreadable)]
    md += [f"## Conflicting groups ({len(audit.conflicting)})\n",
           "Duplicate or near-duplicate images whose labels disagree (age, gender, race); images in `report.html`.\n",
           md_table(["files", "labels"], [[", ".join(f"`{f}`" for f in g["files"]),
                                           "; ".join("/".join(map(str, lab)) for lab in g["labels"])]
                                          for g in data["conflicting"]])]

    body = [html_table(["count", "value"], _count_rows(summary)), f"<p>{html.escape(rule_text)}</p>"]
    body += [f"<h2>{k.replace('_', ' ')}</h2><img class='plot' src='{data_uri(p)}'>" for k, p in plots.items()]
    if malformed:
        body += ["<h2>Malformed names</h2>", html_table(["file", "issues", "set aside"], malformed)]
    if unreadable:
        body += ["<h2>Unreadable files</h2>", html_table(["file", "reason"], unreadable)]
    body += [f"<h2>Conflicting groups ({len(audit.conflicting)})</h2>"]
    body += [_faces_html(audit, g) for g in audit.conflicting]

    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "report.html").write_text(html_page("Data audit of "
                                               f"{audit.faces.root.name}", "".join(body)), encoding="utf-8")
    write_json(out / "audit.json", data)
    return data
