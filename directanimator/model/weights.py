"""Locating the parts of a local CogVideoX model folder (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

HINT = "e.g. the THUDM/CogVideoX1.5-5B-I2V folder from Hugging Face, downloaded by you"


def find_component(path: Path, sub: str, what: str, weights: str) -> Path:
    """`path/sub` when it holds config.json, else `path` itself when it does; otherwise an error that
    names the files needed."""
    for folder in (path / sub, path):
        if (folder / "config.json").is_file():
            return folder
    raise InputError(f"no {what} at {path}: expected {path}/{sub}/config.json and {weights} ({HINT})")
