"""The one error type whose message is shown to a user as a single line.

An error may carry a hint: the setting that fixes it, with ``{}`` in the message where it is named. The library
names it as its argument (``parameter``, what ``str(exc)`` shows); the command line words it as a flag
(``option``, what ``user_message`` shows), so the library's errors make sense without the CLI.
"""
from __future__ import annotations


class EdgeAgeError(Exception):
    """A problem the user can fix (bad input, missing file, unwritable folder)."""

    def __init__(self, message: str = "", *, option: str | tuple[str, ...] | None = None,
                 parameter: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.message = message
        self.option = (option,) if isinstance(option, str) else option
        self.parameter = (parameter,) if isinstance(parameter, str) else parameter or self.option

    def worded(self, names: tuple[str, ...] | None) -> str:
        """The message with the hint's setting named as ``names`` (no hint: the message as it is)."""
        return self.message.format(*names) if names else self.message

    def __str__(self) -> str:
        return self.worded(self.parameter)

    def for_cli(self) -> str:
        """The message with the hint worded as the command line's flag."""
        return self.worded(self.option)


def literal(value) -> str:
    """``value`` as text to put inside a message with a hint (its braces doubled, so that naming the setting
    leaves them as they are)."""
    return str(value).replace("{", "{{").replace("}", "}}")


def user_message(exc: BaseException) -> str:
    """The one line shown for ``exc``: its text (a hint worded as a flag), or for an ``OSError`` what failed, on
    which file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    text = exc.for_cli() if isinstance(exc, EdgeAgeError) else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
