"""Shared helpers for the benchmark scripts: median timing and peak memory of a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# The environment as the benchmark started, for child processes: importing cv2 sets LD_LIBRARY_PATH
# (and Qt paths) in this process, and a child inheriting them measured a different peak memory
# (much higher for the same cue job).
_START_ENV = dict(os.environ)


def peak_rss_mib_of(code: str) -> float:
    """Run `code` in a fresh interpreter; return its peak resident memory in MiB."""
    wrapper = code + "\nimport resource, json\nprint(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True, env=_START_ENV)
    return json.loads(out.stdout.strip().splitlines()[-1]) / 1024.0
