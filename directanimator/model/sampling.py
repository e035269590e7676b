"""The denoising loop shared by the pipeline (pipeline/) and training-time validation
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


def build_scheduler(kind: str = "ddim", pretrained: str | Path | None = None, backbone: str = "cogvideox"):
    """The one scheduler factory (training and inference): CogVideoX's DDIM or DPM scheduler, from
    `<pretrained>/scheduler/` when that folder exists, else with CogVideoX's settings. A Wan backbone
    samples with its checkpoint's own flow-matching scheduler whatever `kind` says."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    if backbone == "wan":
        from .wan_sampling import build_wan_scheduler

        return build_wan_scheduler(pretrained)

    cls = CogVideoXDPMScheduler if kind == "dpm" else CogVideoXDDIMScheduler
    if pretrained is not None and (Path(pretrained) / "scheduler").is_dir():
        return cls.from_pretrained(str(pretrained), subfolder="scheduler")
    return cls(**COGVIDEOX_SCHEDULER)


CUE_KEYS = ("pose_latents", "face_latents", "body_mask", "face_mask")


def weighted_mean(error: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(error x weights) / sum(weights), the weights broadcast to the error's shape (a 0/1 mask
    that leaves cells out multiplied in): the denoising losses weighted by train.person_loss_weight."""
    w = weights.float().expand_as(error)
    return (error * w).sum() / w.sum()


def compute_dtype(transformer) -> torch.dtype:
    """The dtype the transformer computes in: the dtype most of its weights have (a Wan model keeps
    a few small modules in float32 whatever it is loaded in, diffusers' `_keep_in_fp32_modules`), or,
    with fp8 weight storage (layerwise casting, `compute_dtype` recorded by the pipeline), the dtype
    they are cast to."""
    recorded = getattr(transformer, "compute_dtype", None)
    if recorded is not None:
        return recorded
    counts: dict[torch.dtype, int] = {}
    for p in (transformer.parameters() if isinstance(transformer, torch.nn.Module) else ()):
        counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return max(counts, key=counts.get) if counts else torch.float32


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


def guided_velocity(transformer, latents: torch.Tensor, t: torch.Tensor, scheduler, reference_latent: torch.Tensor,
                    encoder_hidden_states: torch.Tensor, cond: dict[str, torch.Tensor], guidance_scale: float = 1.0,
                    dtype: torch.dtype | None = None) -> torch.Tensor:
    """One model evaluation of a denoising step: v for `latents` (B, F, C, h, w) at timestep `t`,
    the reference latent laid in as the model was trained (`reference_layout`), in float32. With
    `guidance_scale` != 1, classifier-free guidance on the cues (all of `cond` zeroed for the second
    call). `cond` and `encoder_hidden_states` must already be in the compute dtype."""
    from .transformer import i2v_hidden_states, reference_layout_of

    dtype = compute_dtype(transformer) if dtype is None else dtype
    layout = reference_layout_of(transformer)
    x = i2v_hidden_states(scheduler.scale_model_input(latents, t), reference_latent, layout).to(dtype)
    tt = t.expand(latents.shape[0])
    v = transformer(x, encoder_hidden_states, tt, **cond).sample.float()
    if guidance_scale != 1.0:
        v_u = transformer(x, encoder_hidden_states, tt, **{k: torch.zeros_like(c) for k, c in cond.items()}).sample.float()
        v = v_u + guidance_scale * (v - v_u)
    return v


def scheduler_step(scheduler, v: torch.Tensor, i: int, latents: torch.Tensor, old_pred: torch.Tensor | None,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step `i` of `scheduler.timesteps` on v-prediction `v`: (next latents, the x0 prediction the DPM
    scheduler's next step needs; None for DDIM)."""
    from diffusers import CogVideoXDPMScheduler

    timesteps = scheduler.timesteps
    t = timesteps[i]
    if isinstance(scheduler, CogVideoXDPMScheduler):
        return scheduler.step(v, old_pred, t, timesteps[i - 1] if i > 0 else None, latents,
                              generator=generator, return_dict=False)
    return scheduler.step(v, t, latents, return_dict=False)[0], None


@torch.no_grad()
def sample_latents(transformer, scheduler, reference_latent: torch.Tensor, cues: dict[str, torch.Tensor],
                   encoder_hidden_states: torch.Tensor, steps: int, generator: torch.Generator,
                   guidance_scale: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Latents (B, F, C, h, w) from noise drawn with `generator` (CPU), on the cues' device. For a
    model with `patch_size_t` and an F that does not fit it, `front_padding` extra latent frames are
    sampled in front (their own noise, the reference latent there) and dropped at the end, as
    diffusers' CogVideoX1.5 I2V pipeline does. A Wan transformer samples in its own way
    (model/wan_sampling.py, the animation layout) with its flow-matching scheduler."""
    from tqdm import tqdm

    from . import is_wan
    from .transformer import front_padding, pad_front

    if is_wan(transformer):
        from .wan_sampling import sample_wan_animation

        return sample_wan_animation(transformer, scheduler, reference_latent, cues, encoder_hidden_states, steps,
                                    generator, guidance_scale, progress)

    b, f, *rest = cues["pose_latents"].shape
    pad = front_padding(f, transformer.config.get("patch_size_t"))
    shape = (b, f + pad, *rest)
    device = cues["pose_latents"].device
    latents = (torch.randn(shape, generator=generator, dtype=torch.float32) * scheduler.init_noise_sigma).to(device)
    scheduler.set_timesteps(steps, device=device)
    # the transformer runs in its own dtype (bf16 on GPUs), the scheduler's arithmetic in float32
    dtype = compute_dtype(transformer)
    cond = {k: pad_front(cues[k], pad).to(dtype) for k in CUE_KEYS}
    enc = encoder_hidden_states.to(dtype)
    if enc.shape[0] != shape[0]:
        enc = enc.expand(shape[0], -1, -1)
    old_pred = None
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoise", leave=False, disable=not progress)):
        v = guided_velocity(transformer, latents, t, scheduler, reference_latent, enc, cond, guidance_scale, dtype)
        latents, old_pred = scheduler_step(scheduler, v, i, latents, old_pred, generator)
    return from_diffusion_target(transformer, latents[:, pad:], reference_latent.float())


@torch.no_grad()
def sample_fused_latents(transformer, scheduler, reference_latent: torch.Tensor, window_cues, layout: list[list[int]],
                         total: int, encoder_hidden_states: torch.Tensor, steps: int, generator: torch.Generator,
                         guidance_scale: float = 1.0, progress: bool = False, workdir: Path | None = None,
                         callback=None, fused_steps: int | None = None):
    """Overlapping windows denoised together (MimicMotion's and StableAnimator's fusion, in the
    shared latent sequence of `fused_window_layout`): one draw of initial noise for the whole
    sequence, so overlapping windows start from the same noise; at every step each window predicts
    v for its latents and every shared latent takes the weighted mean of the predictions of the
    windows covering it (triangular weights, highest mid-window), then one scheduler step moves the
    whole sequence. `window_cues(w)` gives window w's cue tensors (CUE_KEYS, batch 1).

    The sequence and its accumulators live in files under `workdir` (numpy memmaps), so memory stays
    one window's whatever the video's length. Returns the final latents in the model's diffusion
    target, (total, C, h, w) float32 (memmap), with `layout`; `callback(step, steps)` after each step.
    For a model whose `patch_size_t` does not fit a window's latent count, each window also gets its own
    private padding latents in front (as `sample_latents`), stored after the `total` shared ones.

    `fused_steps` N (None: every step): the windows are fused at the first N steps only, then each goes
    on alone from the fused state (0: only the initial noise is shared). The result is then each
    window's own latents one after another, (windows x n, C, h, w), with the layout that indexes them."""
    import numpy as np
    from diffusers import CogVideoXDPMScheduler
    from tqdm import tqdm

    from .transformer import front_padding

    c0 = window_cues(0)
    _, n, c, h, w = c0["pose_latents"].shape
    given_layout = [list(idx) for idx in layout]
    pad = front_padding(n, transformer.config.get("patch_size_t"))
    shared_total = total
    if pad:  # each window's private padding latents, after the shared ones
        layout = [list(range(total + k * pad, total + (k + 1) * pad)) + list(idx) for k, idx in enumerate(layout)]
        total += pad * len(layout)
    run = _FusedRun(transformer, scheduler, reference_latent, window_cues, layout, pad, encoder_hidden_states,
                    guidance_scale, c0["pose_latents"].device)
    x = _latent_buffer(workdir, "latents", (total, c, h, w))
    for i in range(total):  # one noise draw, frame by frame (same numbers as one (total, ...) draw)
        x[i] = (torch.randn((c, h, w), generator=generator) * scheduler.init_noise_sigma).numpy()
    scheduler.set_timesteps(steps, device=run.device)
    timesteps = scheduler.timesteps
    old = _latent_buffer(workdir, "old_prediction", x.shape) if isinstance(scheduler, CogVideoXDPMScheduler) else None
    v_acc, w_acc = _latent_buffer(workdir, "velocity", x.shape), np.zeros(total, np.float32)
    fused_until = len(timesteps) if fused_steps is None else max(0, min(int(fused_steps), len(timesteps)))
    for i, t in enumerate(tqdm(timesteps, desc="denoise (fused windows)", leave=False, disable=not progress)):
        if i >= fused_until:
            break
        run.fused_step(i, t, x, old, v_acc, w_acc, generator)
        if callback is not None:
            callback(i + 1, len(timesteps))
    if fused_until == len(timesteps):
        return x[:shared_total], given_layout
    # the remaining steps window by window, each from its slice of the fused state
    out = _latent_buffer(workdir, "windows", (len(layout) * n, c, h, w))
    for wi, idx in enumerate(layout):
        out[wi * n:(wi + 1) * n] = run.finish_window(wi, idx, x, old if fused_until > 0 else None,
                                                     timesteps, fused_until, generator)
    if callback is not None:
        callback(len(timesteps), len(timesteps))
    return out, [list(range(wi * n, (wi + 1) * n)) for wi in range(len(layout))]


def _latent_buffer(workdir: Path | None, name: str, shape: tuple):
    """A float32 latent array: a numpy memmap file under `workdir` (memory stays one window's), or
    in memory without one."""
    import numpy as np

    if workdir is None:
        return np.zeros(shape, np.float32)
    return np.lib.format.open_memmap(str(Path(workdir) / f"{name}.npy"), mode="w+", dtype=np.float32, shape=shape)


class _FusedRun:
    """What every step of `sample_fused_latents` shares: the model, the windows' cues and layout,
    the weights with which windows share latents (triangular over latents 1..n-1, highest
    mid-window; padding and a window's first latent its own)."""

    CHUNK = 64  # latent frames per scheduler call

    def __init__(self, transformer, scheduler, reference_latent, window_cues, layout, pad, encoder_hidden_states,
                 guidance_scale, device):
        self.transformer, self.scheduler, self.reference_latent = transformer, scheduler, reference_latent
        self.window_cues, self.layout, self.pad, self.guidance_scale = window_cues, layout, pad, guidance_scale
        self.device, self.dtype = device, compute_dtype(transformer)
        self.enc = encoder_hidden_states.to(self.dtype)
        n = len(layout[0]) - pad
        shared_w = [float(min(j, n - j)) + 0.05 for j in range(1, n)]
        self.weights = [[1.0] * (pad + 1) + shared_w for _ in layout]

    def velocity(self, wi: int, lat: torch.Tensor, t) -> torch.Tensor:
        from .transformer import pad_front

        cues = self.window_cues(wi)
        cond = {k: pad_front(cues[k], self.pad).to(self.dtype) for k in CUE_KEYS}
        return guided_velocity(self.transformer, lat, t, self.scheduler, self.reference_latent, self.enc, cond,
                               self.guidance_scale, self.dtype)

    def fused_step(self, i: int, t, x, old, v_acc, w_acc, generator) -> None:
        """Step i on the whole sequence `x` (in place): each window's v, their weighted mean on every
        latent, then one scheduler step (`old`: DPM's previous prediction, in place)."""
        import numpy as np

        v_acc[:] = 0.0
        w_acc[:] = 0.0
        for wi, idx in enumerate(self.layout):
            lat = torch.from_numpy(np.stack([x[j] for j in idx]))[None].to(self.device)
            v = self.velocity(wi, lat, t)[0].cpu().numpy()
            for pos, j in enumerate(idx):
                v_acc[j] += self.weights[wi][pos] * v[pos]
                w_acc[j] += self.weights[wi][pos]
        for a in range(0, len(x), self.CHUNK):
            b = min(len(x), a + self.CHUNK)
            vv = torch.from_numpy(v_acc[a:b] / w_acc[a:b, None, None, None])[None]
            xx = torch.from_numpy(np.array(x[a:b]))[None]
            op = torch.from_numpy(np.array(old[a:b]))[None] if old is not None and i > 0 else None
            xx, op = scheduler_step(self.scheduler, vv, i, xx, op, generator)
            if old is not None:
                old[a:b] = op[0].numpy()
            x[a:b] = xx[0].numpy()

    def finish_window(self, wi: int, idx: list[int], x, old, timesteps, start: int, generator):
        """Window `wi` alone from step `start` on, from its slice of the fused state; its latents
        without the padding."""
        import numpy as np

        lat = torch.from_numpy(np.stack([x[j] for j in idx]))[None].to(self.device)
        op = torch.from_numpy(np.stack([old[j] for j in idx]))[None].to(self.device) if old is not None else None
        for i in range(start, len(timesteps)):
            v = self.velocity(wi, lat, timesteps[i])
            lat, op = scheduler_step(self.scheduler, v, i, lat, op, generator)
        return lat[0, self.pad:].cpu().numpy()
