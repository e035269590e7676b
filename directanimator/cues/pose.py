"""Pose Cue: segmented foreground -> grayscale -> low-pass in the frequency domain (paper 3.1, A.2).

The filter is a Gaussian frequency response H(f) = exp(-|f|^2 / (2 fc^2)) applied with a real FFT
(torch.fft). It is the same operator as a spatial Gaussian blur of sigma = 1 / (2 pi fc) with
wrap-around borders; away from the border it equals OpenCV's GaussianBlur (tests check both).
"""

from __future__ import annotations

import math

import numpy as np
import torch

POSE_MODES = ("gray_lowpass", "gray", "rgb", "skeleton")


class GaussianLowpass:
    """Frequency-domain Gaussian low-pass for (H, W) images; the response is built once per shape."""

    def __init__(self, cutoff: float):
        if cutoff <= 0:
            raise ValueError(f"low-pass cutoff must be > 0 cycles/pixel, got {cutoff}")
        self.cutoff = cutoff
        self._response: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def sigma(self) -> float:
        """Spatial standard deviation (pixels) of the equivalent Gaussian blur."""
        return 1.0 / (2.0 * math.pi * self.cutoff)

    def response(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._response:
            fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
            fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
            h = torch.exp(-(fx**2 + fy**2) / (2.0 * self.cutoff**2))
            self._response[key] = h.to(torch.float32)
        return self._response[key]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32 -> (H, W) float32 filtered."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        spectrum = torch.fft.rfft2(x)
        out = torch.fft.irfft2(spectrum * self.response(*x.shape), s=x.shape)
        return out.numpy()


def pose_cue(rgb: np.ndarray, mask: np.ndarray, mode: str, lowpass: GaussianLowpass | None) -> np.ndarray:
    """One frame's Pose Cue.

    rgb (H, W, 3) uint8, mask (H, W) bool -> (H, W) uint8 for the gray modes, (H, W, 3) for `rgb`.
    The foreground is cut out before filtering, so the background is black and the silhouette edge
    is softened by the same filter as the texture inside it.
    """
    if mode == "rgb":
        return rgb * mask[:, :, None].astype(np.uint8)
    # ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY.
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gray *= mask
    if mode == "gray":
        return np.clip(gray + 0.5, 0, 255).astype(np.uint8)
    if mode != "gray_lowpass":
        raise ValueError(f"unknown pose cue mode {mode!r}; choose one of {POSE_MODES}")
    assert lowpass is not None
    return np.clip(lowpass(gray) + 0.5, 0, 255).astype(np.uint8)
