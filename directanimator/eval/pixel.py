"""Pixel metrics between generated and ground-truth frames, per frame and averaged over frames.

Frames are (T, H, W, 3) uint8 RGB, compared as float in [0, 1]:
  SSIM  torchmetrics' structural similarity (Gaussian window 11, sigma 1.5), range [-1, 1], 1 = identical
  PSNR  10 log10(1 / MSE) in dB per frame, data range 1, MSE floored at 1e-10: identical frames
        give 100 dB (not +inf, which would swallow any mean over frames or videos)
  L1    mean absolute difference in [0, 1] (the paper's tables print it x 1e-4)
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0).permute(0, 3, 1, 2)


def check_pair(generated: np.ndarray, truth: np.ndarray) -> None:
    if generated.shape != truth.shape:
        from ..errors import InputError

        raise InputError(f"generated {generated.shape} and ground truth {truth.shape} differ in shape")


def ssim(generated: np.ndarray, truth: np.ndarray) -> float:
    check_pair(generated, truth)
    g, t = _to_tensor(generated), _to_tensor(truth)
    per = structural_similarity_index_measure(g, t, data_range=1.0, reduction="none")
    return float(per.mean())


def psnr_per_frame(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    check_pair(generated, truth)
    g, t = _to_tensor(generated), _to_tensor(truth)
    mse = (g - t).pow(2).flatten(1).mean(1).double().numpy()
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-10))


def psnr(generated: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(psnr_per_frame(generated, truth)))


def l1(generated: np.ndarray, truth: np.ndarray) -> float:
    check_pair(generated, truth)
    return float(np.abs(generated.astype(np.float64) - truth.astype(np.float64)).mean() / 255.0)
