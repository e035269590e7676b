"""The benchmark and experiment scripts as modules, for tests of their pieces."""

import importlib
import sys
from pathlib import Path

from .conftest import ROOT


def _load(folder: Path, name: str):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def load_benchmark(name: str):
    """benchmarks/<name>.py imported as the module `name` (its imports of sibling scripts, such as
    `_util` and `cues`, resolved from benchmarks/ during the import)."""
    return _load(ROOT / "benchmarks", name)


def load_experiment(name: str):
    """experiments/<name>.py imported as the module `name` (likewise for its sibling scripts)."""
    return _load(ROOT / "experiments", name)
