"""Silence native (C++) log lines that MediaPipe prints on stderr when its graphs start.

They are not errors and would bury the one-line error contract of the CLI. Only model creation and
a warm-up inference run under this; errors raised there still propagate as Python exceptions.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator


_real_stderr: int | None = None  # the terminal's stderr, kept when a quiet block was interrupted


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """fd 2 to /dev/null for the block. When the block is left by an exception (Ctrl-C, SIGTERM
    while a graph starts), MediaPipe's own threads may still be starting and logging: fd 2 then
    stays silenced, and the one error line goes to the real stderr through `error_line`."""
    global _real_stderr
    if os.environ.get("DIRECTANIMATOR_DEBUG") == "1" or _real_stderr is not None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    ok = False
    try:
        os.dup2(devnull, 2)
        yield
        ok = True
    finally:
        if ok:
            os.dup2(saved, 2)
            os.close(saved)
        else:
            _real_stderr = saved
        os.close(devnull)


def error_line(text: str) -> None:
    """Write the CLI's final error line to the terminal's stderr, even when fd 2 was left silenced."""
    sys.stderr.flush()
    if _real_stderr is None:
        print(text, file=sys.stderr, flush=True)
    else:
        os.write(_real_stderr, (text + "\n").encode())
