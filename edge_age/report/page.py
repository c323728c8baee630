"""Report building blocks: PNG figures, Markdown tables and self-contained HTML pages."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a clear error when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise EdgeAgeError("plots need matplotlib: pip install 'edge-age[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it."""
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


def html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img.plot{max-width:100%}
.group{display:inline-block;border:1px solid #ddd;margin:.3em;padding:.3em;vertical-align:top}
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
