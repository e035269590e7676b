"""Pose Cue: segmented foreground -> grayscale -> low-pass in the frequency domain (paper 3.1, A.2).

The filter is a Gaussian frequency response H(f) = exp(-|f|^2 / (2 fc^2)) applied with a real FFT
(torch.fft). It is the same operator as a spatial Gaussian blur of sigma = 1 / (2 pi fc) with
wrap-around borders; away from the border it equals OpenCV's GaussianBlur (tests check both).

The cue is zero outside the subject, so the filter runs on the subject's box widened by 6 sigma on
each side (`GaussianLowpass.on_support`) instead of the whole frame, and the result goes back where
the whole frame's filter would put it, wrap-around included: what lies further than 6 sigma weighs
less than 1e-8 of the kernel, so both give the same cue (to a rounding, one level at most).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .location import tight_box

POSE_MODES = ("gray_lowpass", "gray", "rgb", "skeleton")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as cv2.COLOR_RGB2GRAY
SUPPORT_SIGMAS = 6.0  # the margin around the subject's box the filter runs on


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (lengths the FFT is quick at)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class GaussianLowpass:
    """Frequency-domain Gaussian low-pass for (H, W) images; the response is built once per shape."""

    def __init__(self, cutoff: float):
        if cutoff <= 0:
            raise ValueError(f"low-pass cutoff must be > 0 cycles/pixel, got {cutoff}")
        self.cutoff = cutoff
        self._response: dict[tuple[int, int], torch.Tensor] = {}
        self._axis: dict[tuple[int, bool], torch.Tensor] = {}  # 1-D responses, by (length, half)

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

    def _axis_response(self, n: int, half: bool) -> torch.Tensor:
        """exp(-f^2 / (2 fc^2)) along one axis of n pixels (rfft's half spectrum when `half`)."""
        key = (n, half)
        if key not in self._axis:
            f = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(n, dtype=torch.float64)
            self._axis[key] = torch.exp(-(f**2) / (2.0 * self.cutoff**2)).to(torch.float32)
        return self._axis[key]

    def _span(self, lo: int, hi: int, n: int) -> tuple[int, int]:
        """Axis [lo, hi) of a frame of n pixels -> (start, length) of the window the filter runs on:
        the span widened by the margin and rounded up to a quick FFT length, or the whole axis
        (start 0) when that would not be shorter."""
        margin = int(math.ceil(SUPPORT_SIGMAS * self.sigma))
        length = _fast_length(hi - lo + 2 * margin)
        return (0, n) if length >= n else (lo - margin, length)

    def on_support(self, patch: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
        """The whole-frame filter of an (H, W) = `shape` image that is zero outside `box` = (x0, x1,
        y0, y1) (exclusive ends) and `patch` inside it, computed on a window around the box.
        Returns the (H, W) float32 result; wrap-around as the whole-frame filter does."""
        x0, x1, y0, y1 = box
        h, w = shape
        (sy, ly), (sx, lx) = self._span(y0, y1, h), self._span(x0, x1, w)
        window = np.zeros((ly, lx), np.float32)
        window[y0 - sy:y1 - sy, x0 - sx:x1 - sx] = patch
        # The response is separable, H = Hy(fy) Hx(fx): applied axis by axis, so only one 1-D response
        # per window length is kept (the windows' shapes vary from frame to frame; one 2-D response
        # per shape would pile up, 94 shapes and 20 MB on a 450-frame clip)
        spectrum = torch.fft.rfft2(torch.from_numpy(window))
        spectrum *= self._axis_response(ly, False)[:, None]
        spectrum *= self._axis_response(lx, True)[None, :]
        filtered = torch.fft.irfft2(spectrum, s=(ly, lx)).numpy()
        if (sy, ly, sx, lx) == (0, h, 0, w):
            return filtered
        return _place(filtered, sy, sx, shape)


def _place(window: np.ndarray, sy: int, sx: int, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) = `shape` frame of zeros with `window` at rows sy.., columns sx..; where the window
    leaves the frame its rows and columns wrap around, as the FFT's do: at most two runs of each (the
    window is shorter than the frame), so four block copies at most."""
    (h, w), (ly, lx) = shape, window.shape
    out = np.zeros((h, w), np.float32)
    for (a0, a1), (r0, r1) in _wrapped(sy, ly, h):
        for (b0, b1), (c0, c1) in _wrapped(sx, lx, w):
            out[r0:r1, c0:c1] = window[a0:a1, b0:b1]
    return out


def _wrapped(start: int, length: int, n: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Positions start .. start + length - 1 (length <= n) taken modulo n, as runs: [((window_lo,
    window_hi), (frame_lo, frame_hi)), ...], the window's runs in order."""
    runs, i = [], 0
    while i < length:
        at = (start + i) % n
        run = min(length - i, n - at)
        runs.append(((i, i + run), (at, at + run)))
        i += run
    return runs


def pose_cue(rgb: np.ndarray, mask: np.ndarray, mode: str, lowpass: GaussianLowpass | None,
             box: np.ndarray | None = None) -> np.ndarray:
    """One frame's Pose Cue.

    rgb (H, W, 3) uint8, mask (H, W) bool -> (H, W) uint8 for the gray modes, (H, W, 3) for `rgb`.
    The foreground is cut out before filtering, so the background is black and the silhouette edge
    is softened by the same filter as the texture inside it. `box`, when given, is the mask's
    `tight_box` (the cue job has it from its first pass); else it is computed here.
    """
    if mode == "rgb":
        return rgb * mask[:, :, None].astype(np.uint8)
    if mode not in ("gray", "gray_lowpass"):
        raise ValueError(f"unknown pose cue mode {mode!r}; choose one of {POSE_MODES}")
    h, w = mask.shape
    if box is None:
        box = tight_box(mask)
    if box is None:
        return np.zeros((h, w), np.uint8)
    x0, x1, y0, y1 = (int(v) for v in box)
    gray = rgb[y0:y1, x0:x1].astype(np.float32) @ _LUMA
    gray *= mask[y0:y1, x0:x1]
    if mode == "gray":
        out = np.zeros((h, w), np.uint8)
        out[y0:y1, x0:x1] = np.clip(gray + 0.5, 0, 255).astype(np.uint8)
        return out
    assert lowpass is not None
    filtered = lowpass.on_support(gray, (x0, x1, y0, y1), (h, w))
    filtered += 0.5
    np.clip(filtered, 0, 255, out=filtered)
    return filtered.astype(np.uint8)
