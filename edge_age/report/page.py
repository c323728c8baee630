"""Report building blocks: PNG figures, Markdown tables and self-contained HTML pages."""
from __future__ import annotations

import base64
import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a clear error when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise EdgeAgeError("plots need matplotlib: pip install 'edge-age[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def drawn_texts(fig) -> list:
    """The texts a figure draws (titles, axis and tick labels, annotations, legend entries), after drawing it."""
    from matplotlib.text import Text
    fig.canvas.draw()
    tick_labels, drawn = set(), set()  # matplotlib keeps spare tick objects: only ticks inside the view are drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks),
                                (axis.get_minorticklocs(), axis.get_minor_ticks)):
                drawn |= {id(label) for tick, loc in zip(ticks(len(locs)), locs) if low - slack <= loc <= high + slack
                          for label in (tick.label1, tick.label2)}
            tick_labels |= {id(label) for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                            for label in (tick.label1, tick.label2)}
    return [t for t in fig.findobj(Text) if (id(t) not in tick_labels or id(t) in drawn) and t.get_visible()
            and t.get_text().strip() and (t.axes is None or t.axes.get_visible())]


def _box(text, renderer):
    """The box of a text's letters in display pixels (an annotation's arrow left out)."""
    from matplotlib.text import Text
    return Text.get_window_extent(text, renderer)


def _clash(a, b, slack: float = 1.0) -> bool:
    """Whether two display boxes overlap by more than ``slack`` pixels each way."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > slack and min(a.y1, b.y1) - max(a.y0, b.y0) > slack


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap, and texts under a legend they are not part of."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), _box(t, renderer)) for t in texts]
    found = [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if _clash(box_a, box_b)]
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        own = {id(t) for t in legend.get_texts()} | {id(legend.get_title())}
        frame = legend.get_window_extent(renderer)
        found += [("legend", t.get_text()) for t in texts
                  if id(t) not in own and _clash(frame, _box(t, renderer))]
    return found


def spread_labels(fig, labels: list) -> None:
    """Move annotations (placed in offset points) up or down by whole line heights until none overlaps another
    drawn text; the first free place nearest to where each was put wins."""
    if not labels:
        return
    fig.canvas.draw()
    fig.set_layout_engine("none")  # the axes stay where the layout put them: moving labels must not move the points
    moving = {id(t) for t in labels}
    others = [t for t in drawn_texts(fig) if id(t) not in moving]
    renderer = fig.canvas.get_renderer()
    taken = [_box(t, renderer) for t in others]
    points = 72.0 / fig.dpi
    for label in labels:
        box = _box(label, renderer)
        x, y = label.xyann
        step = box.height + 2
        for k in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            moved = box.translated(0, k * step)
            if not any(_clash(moved, other) for other in taken):
                break
        label.xyann = (x, y + k * step * points)
        taken.append(moved)


def legend_outside(fig, handles: list | None = None, labels: list | None = None, **options):
    """A legend right of the plots, out of the way of what they show (the figure needs ``layout="constrained"``),
    in columns of at most 16 entries; by default that of the first axes' labelled artists."""
    if handles is None:
        handles, labels = fig.axes[0].get_legend_handles_labels()
    return fig.legend(handles, labels, loc="outside right upper", fontsize=7, ncol=max(1, -(-len(labels) // 16)),
                      **options)


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it; overlapping labels are logged as a warning."""
    clashes = overlapping_labels(fig)
    if clashes:
        log.warning("%s: labels overlap: %s", Path(path).name, "; ".join(f"{a!r} / {b!r}" for a, b in clashes))
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def data_uri(png_path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png_path).read_bytes()).decode()


def image_uri(rgb: np.ndarray) -> str:
    """An RGB image as an embedded JPEG."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def breakable(text) -> str:
    """``text`` as HTML, long words (file and model names) free to wrap after their ``/``, ``_``, ``-`` and ``.``."""
    return re.sub(r"\S{13,}", lambda word: re.sub(r"([/_.-])(?=.)", r"\1<wbr>", word.group()), html.escape(str(text)))


def html_table(header: list[str], rows: list[list]) -> str:
    """A table in a box as wide as the page; long names wrap at their separators, so that it fits."""
    head = "".join(f"<th>{breakable(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{breakable(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


# Pages fit a 1280 px window: the body is at most 1200 px wide, and nothing in it is wider (tables wrap their
# headers and names, plots and images shrink, and a table that still cannot fit scrolls inside its own box).
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;
overflow-wrap:break-word}.table{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:1em 0;
font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3;
vertical-align:bottom}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto}pre{white-space:pre-wrap}
.group{display:inline-block;border:1px solid #ddd;margin:.3em;padding:.3em;vertical-align:top;max-width:100%}
.face{display:inline-block;text-align:center;font-size:.75em;margin:.2em}.face img{width:96px;height:96px}"""


def html_page(title: str, body: str, style: str = "") -> str:
    """A complete HTML document, with ``style`` added to the common one; everything it shows is embedded."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


@dataclass
class Section:
    """A titled part of a page: text, plots, a table; ``html`` and ``markdown`` extras show only in their own page,
    and an ``id`` makes the section a target of the page's navigation bar."""

    title: str
    text: str = ""
    header: list | None = None
    rows: list | None = None
    plots: list[Path] = field(default_factory=list)
    id: str = ""
    html: str = ""
    markdown: str = ""


def to_markdown(title: str, sections: list[Section]) -> str:
    """The Markdown page: per section its text, table, plots (as links to the PNGs beside it) and extra."""
    parts = [f"# {title}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        if s.text:
            parts.append(s.text + "\n")
        if s.header:
            parts.append(md_table(s.header, s.rows))
        parts += [f"![{p.stem}]({p.name})\n" for p in s.plots]
        if s.markdown:
            parts.append(s.markdown)
    return "\n".join(parts)


def to_html(title: str, sections: list[Section], style: str = "") -> str:
    """The self-contained HTML page (plots embedded); sections with an ``id`` get a navigation bar on top."""
    linked = [s for s in sections if s.id]
    links = "".join(f"<a href='#{s.id}'>{html.escape(s.title)}</a>" for s in linked)
    body = ["<nav>" + links + "</nav>"] if linked else []
    for s in sections:
        body.append(f"<section id='{s.id}'>" if s.id else "<section>")
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        body += [f"<p><img class='plot' alt='{html.escape(p.stem)}' src='{data_uri(p)}'></p>" for p in s.plots]
        body.append(s.html)
        if s.header:
            body.append(html_table(s.header, s.rows))
        body.append("</section>")
    return html_page(title, "".join(body), style)
