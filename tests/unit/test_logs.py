"""What the command line lets through to the terminal: the library's warnings and status lines, once each."""
import io
import logging

from firmware_host.logs import ROOTS, STATUS, to_terminal


def test_terminal_gets_warnings_and_status_lines_and_the_root_logger_gets_none():
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in ROOTS}
    stream, elsewhere = io.StringIO(), io.StringIO()
    root_handler = logging.StreamHandler(elsewhere)  # as a library's logging.basicConfig() would add
    logging.getLogger().addHandler(root_handler)
    handler = to_terminal(stream)
    try:
        logging.getLogger("converters.workbench").info("an INFO record")
        logging.getLogger("converters.workbench").warning("a warning")
        logging.getLogger("edge_age.bench").info("a status line", extra=STATUS)
    finally:
        logging.getLogger().removeHandler(root_handler)
        for name, (level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
    assert stream.getvalue().splitlines() == ["edge-age: warning: a warning", "a status line"]
    assert elsewhere.getvalue() == ""
