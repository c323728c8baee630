"""Strict JSON in and out: every JSON the project writes goes through :func:`to_json` (NaN and
infinities become ``null``); sidecars and specs are read with :func:`read_json` and checked with
:func:`check_schema`, so a bad file gives one line naming its field."""
from __future__ import annotations

import functools
import json
import math
import os
import reprlib
from pathlib import Path

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 40, 40


def finite(value):
    """``value`` as plain JSON types: numpy scalars and arrays unwrapped, tuples as lists, NaN and
    infinities (an AUC over one gender, a mean of nothing) as None."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(data, indent: int | None = 1, compact: bool = False) -> str:
    """Strict JSON text of ``data`` (see :func:`finite`); ``compact`` for one-line records."""
    return json.dumps(finite(data), indent=None if compact else indent, allow_nan=False,
                      separators=(",", ":") if compact else None)


def write_json(path: str | os.PathLike, data, indent: int | None = 1) -> Path:
    """Write ``data`` to ``path`` as strict JSON, atomically."""
    return atomic.write_text(path, to_json(data, indent))


class _NonFinite(str):
    """``NaN``, ``Infinity`` or an overflowing number in a file: kept as text so a schema check names its field."""

    def __repr__(self) -> str:
        return str(self)


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def read_json(path: str | os.PathLike, what: str):
    """The JSON content of ``path``, read strictly (non-finite numbers kept as text for the schema to
    refuse), or a one-line error calling the file ``what``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_NonFinite, parse_float=_parse_float)
    except FileNotFoundError:
        raise EdgeAgeError(f"{what} {path} is missing") from None
    except OSError as exc:
        raise EdgeAgeError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EdgeAgeError(f"{what} {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise EdgeAgeError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise EdgeAgeError(f"{what} {path} is not valid JSON: nested too deeply") from None


@functools.cache
def load_schema(path: str | os.PathLike, definition: str | None = None):
    """A JSON Schema validator for the schema file at ``path`` (read once), or for its ``$defs`` entry
    ``definition``."""
    import jsonschema
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    if definition:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return cls(schema)


def _problem(error) -> str:
    value, limit = _REPR.repr(error.instance), error.validator_value
    templates = {
        "type": lambda: "must be a finite number" if isinstance(error.instance, _NonFinite)
        else f"must be of type {' or '.join(limit) if isinstance(limit, list) else limit}",
        "minimum": lambda: f"must be at least {limit}", "maximum": lambda: f"must be at most {limit}",
        "exclusiveMinimum": lambda: f"must be more than {limit}",
        "exclusiveMaximum": lambda: f"must be less than {limit}",
        "enum": lambda: f"must be one of {', '.join(map(str, limit))}",
        "minItems": lambda: f"must have at least {limit} items", "maxItems": lambda: f"must have at most {limit} items",
    }
    if error.validator in templates:
        return f"{templates[error.validator]()}, not {value}"
    return error.message if len(error.message) < 200 else error.message[:200] + "..."


def check_schema(data, schema_file: str | os.PathLike, where: str | os.PathLike,
                 definition: str | None = None) -> None:
    """Raise a one-line error naming the first field of ``data`` that breaks the schema in ``schema_file`` (or its
    ``$defs`` entry ``definition``)."""
    import jsonschema
    try:
        error = jsonschema.exceptions.best_match(load_schema(schema_file, definition).iter_errors(data))
    except RecursionError:
        raise EdgeAgeError(f"{where}: nested too deeply") from None
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or "top level"
        raise EdgeAgeError(f"{where}: {field}: {_problem(error)}")
