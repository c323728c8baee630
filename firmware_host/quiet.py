"""The runtime's own console noise, hidden unless the user asks for it (``edge-age --verbose``).

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` for every interpreter, and TensorFlow
opens with absl, oneDNN and CUDA lines; ``TF_CPP_MIN_LOG_LEVEL`` silences neither (STACK.md). They come from C++
on file descriptor 2, so :func:`native_quiet` points that descriptor at /dev/null around the calls that print them.
``--verbose`` sets ``EDGE_AGE_VERBOSE=1``, which child processes (the bench's) inherit.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

VERBOSE_ENV = "EDGE_AGE_VERBOSE"


def verbose() -> bool:
    """Whether the runtime's own log lines are wanted."""
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose() -> None:
    os.environ[VERBOSE_ENV] = "1"


@contextlib.contextmanager
def native_quiet() -> Iterator[None]:
    """Discard what C++ code writes to stderr inside the block (Python's exceptions still propagate)."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
