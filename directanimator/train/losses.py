"""Training objectives: the CogVideoX denoising loss and the Same2X alignment loss (eq 4)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..model.sampling import build_scheduler


def make_scheduler(pretrained: str | Path | None = None):
    """The training scheduler (DDIM's noise schedule): model/sampling.py's factory."""
    return build_scheduler("ddim", pretrained)


def sample_timesteps(batch: int, scheduler, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform over {0, ..., T-1}, one per sample (as CogVideoX fine-tuning does)."""
    return torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)


def add_noise(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler) -> torch.Tensor:
    """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps, for (B, F, C, H, W) latents."""
    return scheduler.add_noise(latents, noise, t)


def velocity(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler) -> torch.Tensor:
    """v = sqrt(a_t) eps - sqrt(1 - a_t) x_0, the v-prediction target."""
    return scheduler.get_velocity(latents, noise, t)


def denoising_loss(v_pred: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   scheduler) -> torch.Tensor:
    """Mean squared error of the predicted velocity. CogVideoX's own trainer writes it in x_0 space
    with weight 1 / (1 - a_t): ||x0_hat - x0||^2 = (1 - a_t) ||v_hat - v||^2, so the two agree."""
    target = velocity(latents, noise, t, scheduler)
    return F.mse_loss(v_pred.float(), target.float())


def s2x_loss(h_teacher: torch.Tensor, h_student: torch.Tensor) -> torch.Tensor:
    """Eq 4: L_S2X = -E[ 1/N sum_n cos(h_s^[D,n], h_x^[D,n]) ], over the N vision tokens (B, N, dim)
    of block D. The teacher is detached: it never receives a gradient. Ranges over [-1, 1]."""
    cos = F.cosine_similarity(h_teacher.detach().float(), h_student.float(), dim=-1)
    return -cos.mean()
