"""Logging for library code: every module logs to its own logger under ``edge_age``, ``converters`` or
``firmware_host`` and never prints. A line meant for the terminal as it is (what a long command is doing) is an
INFO record marked ``extra=STATUS``; the command line decides what reaches the terminal (``edge_age.cli.main``)."""
from __future__ import annotations

import logging

STATUS = {"status": True}
ROOTS = ("edge_age", "converters", "firmware_host")


def is_status(record: logging.LogRecord) -> bool:
    return bool(getattr(record, "status", False))


class TerminalFormatter(logging.Formatter):
    """Status lines as they are; warnings and errors as ``edge-age: warning: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if is_status(record) else f"edge-age: warning: {text}"


def to_terminal(stream=None) -> logging.Handler:
    """Send the library's warnings and status lines to ``stream`` (stderr), once per root logger, and nowhere
    else: a handler that another library put on the root logger (``logging.basicConfig``) gets none of them."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TerminalFormatter())
    handler.addFilter(lambda record: record.levelno >= logging.WARNING or is_status(record))
    for name in ROOTS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return handler
