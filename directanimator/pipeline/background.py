"""Keeping the reference photo's background (`inference.keep_background`): outside the region the
person occupies, the output is the reference's own pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from safetensors import safe_open

from ..cues.files import mask_from_uint8


def background_weight(body_mask: np.ndarray, reference_mask: np.ndarray, margin: float) -> np.ndarray:
    """(H, W) float32 weight of the generated frame when the reference's background is kept: 1 over
    the region the person occupies in this frame or occupied in the reference (the Location Cue's body
    mask, any coverage, united with the reference person's mask) grown by `margin` x the frame size,
    falling linearly to 0 over as much again, 0 beyond: there the output is the reference photo's own
    pixels, exact, instead of the codec's lossy, sampled version of them (experiments/ceiling.py
    measures what that is worth). margin 0: the region itself, no feather."""
    region = (np.asarray(body_mask) > 0) | np.asarray(reference_mask).astype(bool)
    px = margin * max(region.shape)
    if not region.any():
        return np.ones(region.shape, np.float32)
    if px <= 0:
        return region.astype(np.float32)
    # distance (px) of every pixel outside the region to its nearest region pixel
    dist = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(2.0 - dist / px, 0.0, 1.0).astype(np.float32)


class BackgroundKeeper:
    """Per output frame, the generated frame blended with the reference by `background_weight`.
    Frames whose body mask is empty (no usable person in that driving frame) use the nearest frame
    that has one; with none in the whole video the generated frames pass unchanged."""

    def __init__(self, spool: Path, reference: np.ndarray, margin: float):
        self.spool, self.margin = spool, margin
        self.reference = reference.astype(np.float32)
        with safe_open(str(spool), "np") as f:
            self.reference_mask = f.get_tensor("reference_mask").astype(bool)
            body = f.get_slice("body_mask")
            n = body.get_shape()[0]
            self.valid = np.array([bool((body[i:i + 1] > 0).any()) for i in range(n)])
        self.valid_idx = np.flatnonzero(self.valid)

    def __call__(self, index: int, frame: np.ndarray) -> np.ndarray:
        if not len(self.valid_idx):
            return frame
        src = index if self.valid[index] else int(self.valid_idx[np.argmin(np.abs(self.valid_idx - index))])
        with safe_open(str(self.spool), "np") as f:
            body = mask_from_uint8(f.get_slice("body_mask")[src:src + 1][0])
        w = background_weight(body, self.reference_mask, self.margin)[..., None]
        return w * frame + (1.0 - w) * self.reference
