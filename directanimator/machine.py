"""The machine a figure was measured on, as every benchmark, experiment and report names it."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), or the architecture where it does not say: these
    machines change hardware from one run to another (AMD EPYC in one, Intel Xeon in the next)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, Python {platform.python_version()}"


