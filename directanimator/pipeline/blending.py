"""Joining overlapping windows' decoded frames (`inference.window_fusion = pixel`, and the last step
of latent fusion): triangular weights, frames given out as soon as they are final."""

from __future__ import annotations

import numpy as np


def triangular_weights(window: int, edge: float = 0.05) -> np.ndarray:
    """w(j) = min(j, window - 1 - j) + edge: a triangle, highest mid-window, almost zero at both
    ends, so in an overlap one window fades out while the next fades in. (A window's first frame is
    its weakest: the codec encodes it alone, as the I2V first frame, so it is least like its
    neighbours; with weights min(j + 1, window - j) it showed as a jump at every window start.)"""
    j = np.arange(window)
    return (np.minimum(j, window - 1 - j) + edge).astype(np.float32)


class WindowBlender:
    """Overlapping windows' decoded frames joined with triangular weights (highest mid-window). Frames
    come out, in order, as soon as no later window touches them: before the next window's start, or
    all remaining ones after the last window. Holds at most one window's frames."""

    def __init__(self, starts: list[int], window: int, num_frames: int):
        self.starts, self.window, self.n = list(starts), window, num_frames
        self.weights = triangular_weights(window)
        self.done = 0  # frames already given out
        self._acc: np.ndarray | None = None  # weighted sums of frames done .. done + len - 1
        self._wacc = np.zeros((0,), np.float32)

    def add(self, wi: int, frames: np.ndarray):
        """Window `wi`'s frames (window, H, W, 3) float; yields (frame index, blended frame) that are final."""
        s = self.starts[wi]
        end = min(s + self.window, self.n)
        if self._acc is None:
            self._acc = np.zeros((0, *frames.shape[1:]), np.float32)
        need = end - self.done
        if need > len(self._acc):
            grow = need - len(self._acc)
            self._acc = np.concatenate([self._acc, np.zeros((grow, *frames.shape[1:]), np.float32)])
            self._wacc = np.concatenate([self._wacc, np.zeros(grow, np.float32)])
        for j in range(end - s):
            k = s + j - self.done
            self._acc[k] += self.weights[j] * frames[j]
            self._wacc[k] += self.weights[j]
        final = (self.starts[wi + 1] if wi + 1 < len(self.starts) else self.n) - self.done
        for k in range(final):
            yield self.done + k, self._acc[k] / self._wacc[k]
        self._acc, self._wacc = self._acc[final:], self._wacc[final:]
        self.done += final
