"""The benchmark scripts as modules, for tests of their pieces."""

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/<name>.py imported as the module `name` (its imports of sibling scripts, such as
    `_util` and `cues`, resolved from benchmarks/ during the import)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
