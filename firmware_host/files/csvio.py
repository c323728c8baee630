"""The one CSV reader: a UTF-8 file read whole, its header checked, one-line errors naming the file.
A byte order mark at its start is dropped and CRLF line ends read as LF (as spreadsheets write them)."""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from firmware_host.errors import EdgeAgeError


def read_table(path: str | os.PathLike, what: str, *, columns: Iterable[str] | None = None,
               required: Iterable[str] | None = None, not_text: str = "is not UTF-8 text",
               strict: bool = False) -> csv.DictReader:
    """A ``DictReader`` over the CSV ``path`` (``what`` names it in errors: "split file", "labels file").

    ``columns`` are the exact header, ``required`` a subset it must hold; ``not_text`` ends the error for a file
    that is not UTF-8; with ``strict`` a broken row (an unterminated quote) raises ``csv.Error`` while reading.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise EdgeAgeError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EdgeAgeError(f"{what} {path} {not_text}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=strict)
    if columns is not None and tuple(reader.fieldnames or ()) != tuple(columns):
        raise EdgeAgeError(f"{what} {path} has columns {reader.fieldnames}, expected {list(columns)}")
    if required is not None and not set(required) <= set(reader.fieldnames or ()):
        raise EdgeAgeError(f"{what} {path} needs the columns {' and '.join(required)}, has {reader.fieldnames}")
    return reader


def read_rows(path: str | os.PathLike, what: str = "CSV file") -> list[dict]:
    """Every row of a CSV file as a dict."""
    return list(read_table(path, what))
