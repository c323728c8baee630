"""Report building blocks: PNG figures, Markdown tables and self-contained HTML pages."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np

from firmware_host import atomic
from firmware_host.errors import EdgeAgeError


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
