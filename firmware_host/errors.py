"""The one error type whose message is shown to a user as a single line."""
from __future__ import annotations


class EdgeAgeError(Exception):
    """A problem the user can fix (bad input, missing file, unwritable folder)."""


def user_message(exc: BaseException) -> str:
    """The one line shown for ``exc``: its text, or for an ``OSError`` what failed, on which file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
