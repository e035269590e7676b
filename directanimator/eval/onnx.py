"""Loading an optional model from a local ONNX file with OpenCV's DNN module (no onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import cv2

from ..errors import InputError


def load_onnx(path: str | Path, what: str, example: str):
    """The network, or one InputError line naming the file (missing or unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} weights not found: {p} (e.g. {example})")
    try:
        return cv2.dnn.readNetFromONNX(str(p))
    except cv2.error as exc:
        raise InputError(f"cannot read {what} ONNX {p}: {str(exc).splitlines()[-1]}") from None
