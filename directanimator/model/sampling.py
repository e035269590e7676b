"""The denoising loop shared by the pipeline (pipeline.py) and training-time validation
(train/validation.py): CogVideoX DDIM or DPM steps on v-predictions, optional classifier-free
guidance on the driving cues (pose, face and location dropped together)."""

from __future__ import annotations

from pathlib import Path

import torch

# CogVideoX-5B / 1.5's scheduler settings (its scheduler/scheduler_config.json): v-prediction,
# scaled-linear betas rescaled to zero terminal SNR, trailing timestep spacing.
COGVIDEOX_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    snr_shift_scale=1.0,
    timestep_spacing="trailing",
    clip_sample=False,
    set_alpha_to_one=True,
    steps_offset=0,
)


def build_scheduler(kind: str = "ddim", pretrained: str | Path | None = None):
    """The one scheduler factory (training and inference): CogVideoX's DDIM or DPM scheduler, from
    `<pretrained>/scheduler/` when that folder exists, else with CogVideoX's settings."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    cls = CogVideoXDPMScheduler if kind == "dpm" else CogVideoXDDIMScheduler
    if pretrained is not None and (Path(pretrained) / "scheduler").is_dir():
        return cls.from_pretrained(str(pretrained), subfolder="scheduler")
    return cls(**COGVIDEOX_SCHEDULER)


CUE_KEYS = ("pose_latents", "face_latents", "body_mask", "face_mask")


def diffusion_target(transformer, latents: torch.Tensor, reference_latent: torch.Tensor) -> torch.Tensor:
    """What the model denoises: the video latents (B, F, C, h, w), or, for a model with
    `reference_residual`, their difference from the reference latent (B, 1, C, h, w)."""
    if transformer.config.get("reference_residual", False):
        return latents - reference_latent.view(latents.shape[0], 1, *latents.shape[2:]).to(latents)
    return latents


def from_diffusion_target(transformer, target: torch.Tensor, reference_latent: torch.Tensor) -> torch.Tensor:
    """The inverse of `diffusion_target`."""
    if transformer.config.get("reference_residual", False):
        return target + reference_latent.view(target.shape[0], 1, *target.shape[2:]).to(target)
    return target


@torch.no_grad()
def sample_latents(transformer, scheduler, reference_latent: torch.Tensor, cues: dict[str, torch.Tensor],
                   encoder_hidden_states: torch.Tensor, steps: int, generator: torch.Generator,
                   guidance_scale: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Latents (B, F, C, h, w) from noise drawn with `generator` (CPU), on the cues' device."""
    from diffusers import CogVideoXDPMScheduler
    from tqdm import tqdm

    from .transformer import i2v_hidden_states

    shape = tuple(cues["pose_latents"].shape)
    device = cues["pose_latents"].device
    latents = (torch.randn(shape, generator=generator, dtype=torch.float32) * scheduler.init_noise_sigma).to(device)
    scheduler.set_timesteps(steps, device=device)
    layout = transformer.config.get("reference_layout", "first_frame")
    # the transformer runs in its own dtype (bf16 on GPUs), the scheduler's arithmetic in float32
    params = list(transformer.parameters()) if isinstance(transformer, torch.nn.Module) else []
    dtype = params[0].dtype if params else torch.float32
    cond = {k: cues[k].to(dtype) for k in CUE_KEYS}
    uncond = {k: torch.zeros_like(cues[k], dtype=dtype) for k in CUE_KEYS}
    enc = encoder_hidden_states.to(dtype)
    if enc.shape[0] != shape[0]:
        enc = enc.expand(shape[0], -1, -1)
    old_pred = None
    timesteps = scheduler.timesteps
    for i, t in enumerate(tqdm(timesteps, desc="denoise", leave=False, disable=not progress)):
        x = i2v_hidden_states(scheduler.scale_model_input(latents, t), reference_latent, layout).to(dtype)
        tt = t.expand(shape[0])
        v = transformer(x, enc, tt, **cond).sample.float()
        if guidance_scale != 1.0:
            v_u = transformer(x, enc, tt, **uncond).sample.float()
            v = v_u + guidance_scale * (v - v_u)
        if isinstance(scheduler, CogVideoXDPMScheduler):
            latents, old_pred = scheduler.step(v, old_pred, t, timesteps[i - 1] if i > 0 else None, latents,
                                               generator=generator, return_dict=False)
        else:
            latents = scheduler.step(v, t, latents, return_dict=False)[0]
    return from_diffusion_target(transformer, latents, reference_latent.float())
