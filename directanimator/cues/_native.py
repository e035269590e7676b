"""Silence native (C++) log lines that MediaPipe prints on stderr when its graphs start.

They are not errors and would bury the one-line error contract of the CLI. Only model creation and
a warm-up inference run under this; errors raised there still propagate as Python exceptions.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    if os.environ.get("DIRECTANIMATOR_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
