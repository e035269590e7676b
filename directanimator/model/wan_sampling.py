"""Image-to-video sampling on a Wan backbone, step for step as diffusers' WanImageToVideoPipeline
samples, with the driving cues given to the transformer (`WanCueFusionTransformer3D`).

The two image-to-video forms of the Wan family:

  i2v   Wan2.1-I2V-14B: the transformer's input is the noisy latents, a 4-channel mask marking the
        reference's frame, and the VAE latents of the reference followed by black frames (the
        condition), on channels; the reference's CLIP image tokens join the text in the
        cross-attention context.
  ti2v  Wan2.2-TI2V-5B: latent frame 0 *is* the reference's latent, held clean throughout (timestep
        0 for its tokens), the other frames are denoised; no image tokens.

Latents are in Wan's layout here, (B, C, F, h, w). The scheduler is the checkpoint's flow-matching
one (`scheduler/`, UniPC with flow sigmas); the model predicts the flow velocity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .sampling import CUE_KEYS

WAN_FORMS = ("i2v", "ti2v")


def wan_form(transformer) -> str:
    """Which image-to-video form a Wan transformer was trained for: `ti2v` when it takes as many
    channels as it predicts (no condition channels), else `i2v`."""
    cfg = transformer.config
    return "ti2v" if cfg.in_channels == cfg.out_channels else "i2v"


def build_wan_scheduler(pretrained: str | Path | None = None, flow_shift: float = 3.0):
    """The checkpoint's scheduler (`<pretrained>/scheduler/`), or UniPC with flow sigmas and the
    settings of Wan's diffusers folders when there is none."""
    from diffusers import UniPCMultistepScheduler

    if pretrained is not None and (Path(pretrained) / "scheduler").is_dir():
        return UniPCMultistepScheduler.from_pretrained(str(pretrained), subfolder="scheduler")
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift,
                                   num_train_timesteps=1000)


class WanImageEncoder:
    """Wan2.1 I2V's image tokens: the folder's CLIP vision model (`image_encoder/`) on the reference as
    its `image_processor/` prepares it, the hidden states before the last layer (as diffusers'
    pipeline takes them)."""

    def __init__(self, path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        from transformers import CLIPImageProcessor, CLIPVisionModel

        from ..errors import InputError

        folder = Path(path)
        for sub in ("image_encoder", "image_processor"):
            if not (folder / sub).is_dir():
                raise InputError(f"{folder}: no {sub}/ folder; Wan2.1 I2V checkpoints carry the CLIP image "
                                 f"encoder there (the diffusers layout of Wan-AI/Wan2.1-I2V-14B-*-Diffusers)")
        self.processor = CLIPImageProcessor.from_pretrained(str(folder / "image_processor"))
        self.model = CLIPVisionModel.from_pretrained(str(folder / "image_encoder"), torch_dtype=dtype).to(device)
        self.model.requires_grad_(False).eval()

    @torch.no_grad()
    def __call__(self, image) -> torch.Tensor:
        """`image`: an RGB uint8 (H, W, 3) array or PIL image -> (1, L, D)."""
        from PIL import Image

        pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
        pixels = self.processor(images=pil, return_tensors="pt").to(self.model.device)
        return self.model(**pixels, output_hidden_states=True).hidden_states[-2]


@dataclass
class WanCondition:
    """What stays fixed while sampling: `latents`, the condition latents (B, C, F, h, w) (i2v: the
    encoded reference-then-black video; ti2v: the reference's latent in frame 0, zeros after);
    `mask`, i2v's (B, 4, F, h, w) frame mask or ti2v's (1, 1, F, h, w) mask that is 0 on the reference
    frame; `image_embeds`, i2v's CLIP image tokens (B, L, D) or None."""

    latents: torch.Tensor
    mask: torch.Tensor
    image_embeds: torch.Tensor | None = None
    form: str = "i2v"


def wan_condition(codec, reference: torch.Tensor, num_frames: int, form: str,
                  image_embeds: torch.Tensor | None = None) -> WanCondition:
    """The condition for `reference` (B, 1, 3, H, W) in [-1, 1] and a video of `num_frames` frames,
    as diffusers' WanImageToVideoPipeline.prepare_latents builds it."""
    if form not in WAN_FORMS:
        raise ValueError(f"Wan image-to-video form must be one of {WAN_FORMS}, got {form!r}")
    tf = codec.temporal_factor
    f = (num_frames - 1) // tf + 1
    if form == "ti2v":
        ref = codec.encode_reference(reference).permute(0, 2, 1, 3, 4)  # (B, C, 1, h, w)
        b, c, _, h, w = ref.shape
        latents = torch.cat([ref, ref.new_zeros(b, c, f - 1, h, w)], dim=2)
        mask = ref.new_ones(1, 1, f, h, w)
        mask[:, :, 0] = 0
        return WanCondition(latents, mask, None, form)
    latents = codec.encode_condition(reference, num_frames).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
    b, _, _, h, w = latents.shape
    return WanCondition(latents, i2v_mask(b, f, h, w, tf, like=latents), image_embeds, form)


def wan_model_input(latents: torch.Tensor, cond: WanCondition, t: torch.Tensor,
                    patch_size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden_states, timestep) for the transformer at step `t`: i2v concatenates the mask and the
    condition; ti2v puts the reference's latent in frame 0 and gives its tokens timestep 0."""
    b = latents.shape[0]
    if cond.form == "ti2v":
        x = (1 - cond.mask) * cond.latents + cond.mask * latents
        return x, token_timesteps(cond, t.expand(b), patch_size)
    return torch.cat([latents, cond.mask, cond.latents], dim=1), t.expand(b)


def token_timesteps(cond: WanCondition, t: torch.Tensor, patch_size: tuple[int, ...]) -> torch.Tensor:
    """ti2v: each sample's timestep `t` (B,) on every token, 0 on the reference frame's: (B, N)."""
    per_token = cond.mask[0][0][:, ::patch_size[1], ::patch_size[2]].flatten()
    return per_token[None] * t[:, None]


def wan_velocity(transformer, latents, t, cond: WanCondition, prompt_embeds, cues: dict, guidance_scale: float,
                 dtype: torch.dtype) -> torch.Tensor:
    """The flow velocity at `t` in float32; with `guidance_scale` != 1, classifier-free guidance on
    the cues (all zeroed for the second call), as the CogVideoX sampler guides."""
    x, timestep = wan_model_input(latents, cond, t, transformer.config.patch_size)
    image = cond.image_embeds.to(dtype) if cond.image_embeds is not None else None
    args = dict(hidden_states=x.to(dtype), timestep=timestep, encoder_hidden_states=prompt_embeds,
                encoder_hidden_states_image=image, return_dict=False)
    v = transformer(**args, **cues)[0].float()
    if guidance_scale != 1.0 and cues:
        v_u = transformer(**args, **{k: torch.zeros_like(c) for k, c in cues.items()})[0].float()
        v = v_u + guidance_scale * (v - v_u)
    return v


@torch.no_grad()
def sample_wan_latents(transformer, scheduler, cond: WanCondition, prompt_embeds: torch.Tensor, steps: int,
                       generator: torch.Generator, cues: dict[str, torch.Tensor] | None = None,
                       guidance_scale: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Latents (B, C, F, h, w) from noise drawn with `generator` (CPU, in Wan's layout as diffusers
    draws it), the reference frame put back for ti2v. `cues`: CUE_KEYS in Wan's layout (the cue
    latents (B, C, F, h, w), the masks (B, 1, F, h, w)); None for the backbone alone."""
    from tqdm import tqdm

    from .sampling import compute_dtype

    b, _, f, h, w = cond.latents.shape
    shape = (b, transformer.config.out_channels, f, h, w)
    device = cond.latents.device
    latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
    dtype = compute_dtype(transformer)
    given = {k: cues[k].to(device, dtype) for k in CUE_KEYS if k in cues} if cues else {}
    enc = prompt_embeds.to(device, dtype).expand(b, -1, -1)
    scheduler.set_timesteps(steps, device=device)
    for t in tqdm(scheduler.timesteps, desc="denoise", leave=False, disable=not progress):
        v = wan_velocity(transformer, latents, t, cond, enc, given, guidance_scale, dtype)
        latents = scheduler.step(v, t, latents, return_dict=False)[0]
    if cond.form == "ti2v":
        latents = (1 - cond.mask) * cond.latents + cond.mask * latents
    return latents


# ----------------------------------------------------------------------------- training objective


def flow_sigmas(batch: int, shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise levels for flow-matching training, one per sample: u ~ U(0, 1) moved by the checkpoint's
    `flow_shift` as its sampler moves them (sigma = shift u / (1 + (shift - 1) u)), so training sees
    the levels sampling visits."""
    u = torch.rand(batch, generator=generator)
    return shift * u / (1 + (shift - 1) * u)


def flow_input(transformer, latents: torch.Tensor, cond: WanCondition, sigma: torch.Tensor,
               noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden_states, timestep) of flow-matching training on clean latents (B, C, F, h, w): x_s =
    (1 - s) x_0 + s e at the model's timestep 1000 s; for ti2v the reference frame stays clean
    (timestep 0 for its tokens, as in sampling)."""
    s = sigma.view(-1, 1, 1, 1, 1).to(latents)
    noisy = (1 - s) * latents + s * noise
    t = sigma.to(latents.device) * 1000
    if cond.form == "ti2v":
        hidden = (1 - cond.mask) * cond.latents + cond.mask * noisy
        return hidden, token_timesteps(cond, t, transformer.config.patch_size)
    return torch.cat([noisy, cond.mask, cond.latents], dim=1), t


def wan_flow_loss(transformer, latents: torch.Tensor, cond: WanCondition, prompt_embeds: torch.Tensor,
                  cues: dict[str, torch.Tensor], sigma: torch.Tensor, noise: torch.Tensor,
                  feature_depths: tuple[int, ...] = (), dtype: torch.dtype | None = None,
                  weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
    """The denoising loss of Wan's flow matching (`flow_input`): the target velocity e - x_0, mean
    squared error, weighted by `weights` (B, 1, F, h, w) where given (train.person_loss_weight); for
    ti2v the reference frame is not scored. Inputs in `dtype` (default: the model's compute dtype).
    Returns (loss, the vision tokens after `feature_depths` for the S2X term, or None)."""
    from .sampling import compute_dtype, weighted_mean

    dtype = dtype or compute_dtype(transformer)
    hidden, timestep = flow_input(transformer, latents, cond, sigma, noise)
    image = cond.image_embeds.to(dtype) if cond.image_embeds is not None else None
    out = transformer(hidden_states=hidden.to(dtype), timestep=timestep, encoder_hidden_states=prompt_embeds.to(dtype),
                      encoder_hidden_states_image=image, feature_depths=feature_depths,
                      **{k: v.to(dtype) for k, v in cues.items()})
    error = (out.sample.float() - (noise - latents).float()).square()
    w = cond.mask if cond.form == "ti2v" else None
    if weights is not None:
        w = weights if w is None else weights * w
    return (error.mean() if w is None else weighted_mean(error, w)), out.features


# ----------------------------------------------------------------------------- the animation layout
#
# How a window is animated on Wan, the one rule training (train/losses.py) and inference share. The
# window's latents are those of its own frames, exactly as on CogVideoX (the same caches, windows and
# joining); every frame of the window is a driving frame. The reference enters as each form takes an
# image:
#   ti2v  its latent is put in front of the window's as one more latent frame, held clean with
#         timestep 0 and with no cue (zeros): Wan2.2-TI2V's own way of taking an image (its first latent
#         frame) moved one frame earlier; that frame is dropped from the result and never scored.
#   i2v   as Wan2.1-I2V was trained: the window's mask and the encoded reference-then-black video on
#         channels (`condition_latents`), its CLIP tokens in the context (`image_embeds`); both come
#         with the window's inputs (the caches hold them, the pipeline computes them once per video).

REFERENCE_KEYS = ("condition_latents", "image_embeds")


def folder_form(path: str | Path) -> str:
    """`wan_form` of a Wan folder, from its transformer/config.json."""
    import json
    from types import SimpleNamespace

    from .weights import find_component

    folder = find_component(Path(path), "transformer", "Wan transformer", "its config.json")
    return wan_form(SimpleNamespace(config=SimpleNamespace(**json.loads((folder / "config.json").read_text()))))


def i2v_mask(batch: int, latent_frames: int, h: int, w: int, temporal_factor: int = 4,
             like: torch.Tensor | None = None) -> torch.Tensor:
    """Wan2.1-I2V's frame mask (B, temporal_factor, t, h, w): 1 on the reference's latent frame. What
    diffusers builds from pixel frames (frame 0's mask repeated over the temporal factor, then grouped
    into latent frames) comes to this."""
    mask = torch.zeros(batch, temporal_factor, latent_frames, h, w, device=None if like is None else like.device)
    mask[:, :, 0] = 1
    return mask


def animation_condition(reference_latent: torch.Tensor, latent_frames: int,
                        given: dict[str, torch.Tensor] | None = None) -> WanCondition:
    """The condition of a window of `latent_frames` latent frames. ti2v: the reference latent
    (B, 1, C, h, w) in front; i2v (`given` holds REFERENCE_KEYS, (B, t, C, h, w) and (B, L, D)): the
    channel condition and the CLIP tokens."""
    if given is not None and "condition_latents" in given:
        cond = given["condition_latents"].permute(0, 2, 1, 3, 4).float()
        b, _, t, h, w = cond.shape
        return WanCondition(cond, i2v_mask(b, t, h, w, like=cond), given["image_embeds"], "i2v")
    ref = reference_latent.permute(0, 2, 1, 3, 4).float()
    b, c, _, h, w = ref.shape
    latents = torch.cat([ref, ref.new_zeros(b, c, latent_frames, h, w)], dim=2)
    mask = ref.new_ones(1, 1, latent_frames + 1, h, w)
    mask[:, :, 0] = 0
    return WanCondition(latents, mask, None, "ti2v")


def animation_cues(cues: dict[str, torch.Tensor], form: str = "ti2v") -> dict[str, torch.Tensor]:
    """The cues of a window (B, F, C, h, w), as the caches and the pipeline hold them, in Wan's layout
    (B, C, F, h, w); for ti2v with a zero (no cue) frame for the reference in front."""
    out = {}
    for k, v in cues.items():
        v = v.permute(0, 2, 1, 3, 4)
        out[k] = torch.cat([torch.zeros_like(v[:, :, :1]), v], dim=2) if form == "ti2v" else v
    return out


def animation_target(reference_latent: torch.Tensor, latents: torch.Tensor, form: str = "ti2v") -> torch.Tensor:
    """A window's latents (B, F, C, h, w) in Wan's layout, for ti2v behind its reference's (B, 1, C, h, w):
    (B, C, [1 +] F, h, w)."""
    if form == "ti2v":
        latents = torch.cat([reference_latent.to(latents), latents], dim=1)
    return latents.permute(0, 2, 1, 3, 4)


@torch.no_grad()
def sample_wan_animation(transformer, scheduler, reference_latent: torch.Tensor, cues: dict[str, torch.Tensor],
                         prompt_embeds: torch.Tensor, steps: int, generator: torch.Generator,
                         guidance_scale: float = 1.0, progress: bool = False) -> torch.Tensor:
    """A window's latents (B, F, C, h, w) in the animation layout, for `cues` (CUE_KEYS, (B, F, ...),
    and for i2v REFERENCE_KEYS)."""
    form = wan_form(transformer)
    device = cues["pose_latents"].device
    if form == "i2v" and "condition_latents" not in cues:
        raise ValueError("a Wan2.1-I2V model animates with the reference's condition_latents and image_embeds")
    cond = animation_condition(reference_latent.to(device), cues["pose_latents"].shape[1], cues)
    latents = sample_wan_latents(transformer, scheduler, cond, prompt_embeds, steps, generator,
                                 animation_cues({k: cues[k] for k in CUE_KEYS}, form), guidance_scale, progress)
    return (latents[:, :, 1:] if form == "ti2v" else latents).permute(0, 2, 1, 3, 4)
