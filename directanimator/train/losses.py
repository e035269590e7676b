"""Training objectives: the denoising loss (CogVideoX's v-prediction, or Wan's flow matching) and
the Same2X alignment loss (eq 4)."""

from __future__ import annotations

import weakref
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model import front_padding, i2v_hidden_states, pad_front, reference_layout_of
from ..model.sampling import CUE_KEYS, build_scheduler, diffusion_target, weighted_mean
from ..model.wan_sampling import flow_sigmas


def make_scheduler(pretrained: str | Path | None = None):
    """The training scheduler (DDIM's noise schedule): model/sampling.py's factory."""
    return build_scheduler("ddim", pretrained)


def sample_timesteps(batch: int, scheduler, generator: torch.Generator | None = None,
                     focus: torch.Tensor | None = None, share: float = 0.0) -> torch.Tensor:
    """Uniform over {0, ..., T-1}, one per sample (as CogVideoX fine-tuning does). With `focus` (the
    timesteps the inference sampler visits) and `share` > 0, each sample takes one of `focus` instead
    with probability `share` (train.sampler_timesteps); those draws come after the uniform ones, so
    with `share` 0 the generator's stream is the uniform draw's alone."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    if focus is None or share <= 0:
        return t
    picked = torch.rand(batch, generator=generator) < share
    which = torch.randint(0, len(focus), (batch,), generator=generator)
    return torch.where(picked, focus.long()[which], t)


def sampler_timesteps(cfg) -> torch.Tensor:
    """The timesteps the run's inference sampler visits (inference.scheduler at inference.steps)."""
    sampler = build_scheduler(cfg.inference.scheduler, cfg.model.pretrained)
    sampler.set_timesteps(cfg.inference.steps)
    return sampler.timesteps.clone()


def add_noise(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler) -> torch.Tensor:
    """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps, for (B, F, C, H, W) latents."""
    return scheduler.add_noise(latents, noise, t)


def velocity(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler) -> torch.Tensor:
    """v = sqrt(a_t) eps - sqrt(1 - a_t) x_0, the v-prediction target."""
    return scheduler.get_velocity(latents, noise, t)


def denoising_loss(v_pred: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   scheduler, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the predicted velocity. CogVideoX's own trainer writes it in x_0 space
    with weight 1 / (1 - a_t): ||x0_hat - x0||^2 = (1 - a_t) ||v_hat - v||^2, so the two agree.
    With `weights` (`person_weights`), the weighted mean."""
    target = velocity(latents, noise, t, scheduler)
    if weights is None:
        return F.mse_loss(v_pred.float(), target.float())
    return weighted_mean((v_pred.float() - target.float()).square(), weights)


def person_weights(body_mask: torch.Tensor, weight: float) -> torch.Tensor | None:
    """Loss weights per latent cell, 1 + weight x the Location Cue (body mask on the latent grid,
    broadcast over the latent channels): the person's cells count more (train.person_loss_weight);
    None for weight 0, the plain mean."""
    return 1 + weight * body_mask.float() if weight > 0 else None


def s2x_loss(h_teacher: torch.Tensor, h_student: torch.Tensor) -> torch.Tensor:
    """Eq 4: L_S2X = -E[ 1/N sum_n cos(h_s^[D,n], h_x^[D,n]) ], over the N vision tokens (B, N, dim)
    of block D. The teacher is detached: it never receives a gradient. Ranges over [-1, 1]."""
    cos = F.cosine_similarity(h_teacher.detach().float(), h_student.float(), dim=-1)
    return -cos.mean()


def _param_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype the module computes in: its trained weights' (a partial run may hold its frozen
    backbone in bf16, train.frozen_dtype), else most of its weights' (model/sampling.py)."""
    from ..model.sampling import compute_dtype

    floating = [p for p in module.parameters() if p.is_floating_point()]
    trained = [p for p in floating if p.requires_grad]
    return trained[0].dtype if trained else (compute_dtype(module) if floating else None)


def _cast(dtype: torch.dtype | None, x: torch.Tensor, enc: torch.Tensor, cues: dict[str, torch.Tensor]):
    """Floating inputs in the model's weight dtype. A no-op under DDP/FSDP (fp32 weights; autocast or
    FSDP's mixed-precision policy cast inside); under DeepSpeed bf16 the engine holds bf16 weights and
    accelerate does not autocast, so fp32 inputs would fail ("mat1 and mat2 must have the same dtype")."""
    if dtype is None or x.dtype == dtype:
        return x, enc, cues
    return x.to(dtype), enc.to(dtype), {k: v.to(dtype) if v.is_floating_point() else v for k, v in cues.items()}


class Same2XObjective:
    """The training objective of both stages in one object, as REPA's loss is (paper 3.2): the
    denoising loss, and in the cross-ID stage the alignment to the frozen same-ID teacher (eq 4). It
    owns the teacher, the alignment depth D, the optional projector (student width -> teacher width;
    trained with the student) and lambda, samples its noise, timesteps and cue dropout and assembles
    the inputs (`inputs`), runs the student, and returns both terms for the trainer to log; the loss
    to minimise is `loss_d + weight * loss_a` (`total`).

    The student sees its cues (pseudo cues in the cross-ID stage: another identity doing the clip's
    motion); the teacher sees the same noisy input with the clip's own cues and runs only its first D
    blocks, without gradient. Without a teacher (same-ID stage) or with lambda = 0 the alignment term
    is 0 and the student's forward returns no features."""

    def __init__(self, scheduler, teacher: torch.nn.Module | None = None, depth: int | None = None,
                 weight: float = 0.0, projector: torch.nn.Module | None = None, cue_dropout: float = 0.0,
                 person_loss_weight: float = 0.0, focus_timesteps: torch.Tensor | None = None,
                 focus_share: float = 0.0):
        if teacher is not None and weight > 0 and depth is None:
            raise ValueError("Same2X needs the alignment depth D with a teacher")
        self.scheduler, self.cue_dropout, self.person_loss_weight = scheduler, cue_dropout, person_loss_weight
        self.focus_timesteps, self.focus_share = focus_timesteps, focus_share
        self.teacher = teacher.requires_grad_(False).eval() if teacher is not None else None
        self.depth = depth
        self.weight = float(weight) if teacher is not None else 0.0
        self.projector = projector
        self._dtypes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per model, found once

    def _dtype_of(self, module: torch.nn.Module) -> torch.dtype | None:
        if module not in self._dtypes:
            self._dtypes[module] = _param_dtype(module)
        return self._dtypes[module]

    @property
    def aligns(self) -> bool:
        return self.teacher is not None and self.weight > 0

    def __call__(self, student, x: torch.Tensor, encoder_hidden_states: torch.Tensor, t: torch.Tensor,
                 cues: dict[str, torch.Tensor], latents: torch.Tensor, noise: torch.Tensor,
                 teacher_cues: dict[str, torch.Tensor] | None = None, pad: int = 0,
                 loss_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(denoising loss, alignment loss). `x` is the noisy I2V input of `latents` with `noise` at `t`;
        its first `pad` latent frames are padding (model/transformer.py front_padding) and out of the
        denoising loss; `loss_weights` (`person_weights`, padded alike) weight its cells."""
        xs, es, cs = _cast(self._dtype_of(student), x, encoder_hidden_states, cues)
        out = student(xs, es, t, **cs, feature_depths=(self.depth,) if self.aligns else ())
        loss_d = denoising_loss(out.sample[:, pad:], latents[:, pad:], noise[:, pad:], t, self.scheduler,
                                None if loss_weights is None else loss_weights[:, pad:])
        if not self.aligns:
            return loss_d, torch.zeros((), device=loss_d.device)
        if teacher_cues is None:
            raise ValueError("the cross-ID stage needs the teacher's cues (the clip's own)")
        with torch.no_grad():
            xt, et, ct = _cast(self._dtype_of(self.teacher), x, encoder_hidden_states, teacher_cues)
            h_t = self.teacher(xt, et, t, **ct, feature_depths=(self.depth,), features_only=True).features[self.depth]
        h_s = out.features[self.depth]
        if self.projector is not None:
            h_s = self.projector(h_s)
        return loss_d, s2x_loss(h_t, h_s)

    def inputs(self, model, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict:
        """One batch's training inputs, drawn from `generator` in a fixed order (noise, timesteps, cue
        dropout): the diffusion target of the (unwrapped) `model` front-padded as CogVideoX1.5 lays the
        sequence out (its padding left out of the loss), the noisy I2V input, the student's cues and,
        when aligning, the teacher's (the clip's own cues, dropped with the student's). The keyword
        arguments of `__call__` but the student and the text."""
        device = batch["latents"].device
        lat = diffusion_target(model, batch["latents"], batch["reference_latent"])
        b = lat.shape[0]
        pad = front_padding(lat.shape[1], model.config.get("patch_size_t"))
        lat = pad_front(lat, pad)
        noise = torch.randn(lat.shape, generator=generator).to(device)
        t = sample_timesteps(b, self.scheduler, generator, self.focus_timesteps, self.focus_share).to(device)
        keep = (torch.rand(b, generator=generator) >= self.cue_dropout).float().to(device).view(b, 1, 1, 1, 1)
        layout = reference_layout_of(model)
        x = i2v_hidden_states(add_noise(lat, noise, t, self.scheduler), batch["reference_latent"], layout)
        cues = {k: pad_front(batch[k], pad) * keep for k in CUE_KEYS}
        teacher_cues = None
        if self.aligns:
            teacher_cues = dict(pose_latents=pad_front(batch["teacher_pose_latents"], pad) * keep,
                                face_latents=pad_front(batch["teacher_face_latents"], pad) * keep,
                                body_mask=cues["body_mask"], face_mask=cues["face_mask"])
        weights = person_weights(pad_front(batch["body_mask"], pad), self.person_loss_weight)
        return {"x": x, "t": t, "cues": cues, "latents": lat, "noise": noise, "teacher_cues": teacher_cues,
                "pad": pad, "loss_weights": weights}

    def total(self, loss_d: torch.Tensor, loss_a: torch.Tensor) -> torch.Tensor:
        return loss_d + self.weight * loss_a if self.aligns else loss_d


class WanSame2XObjective(Same2XObjective):
    """The same objective on a Wan backbone: Wan's flow matching (model/wan_sampling.py) in the
    animation layout (Wan2.2-TI2V: the reference's latent a clean frame in front of the window's,
    unscored; Wan2.1-I2V: the reference's channel condition and CLIP tokens from the batch), noise
    levels drawn as the checkpoint's `flow_shift` moves them, and the S2X term on the vision tokens of
    block D as on CogVideoX (TI2V's reference frame's tokens included: the teacher sees the same)."""

    def __init__(self, flow_shift: float, teacher: torch.nn.Module | None = None, depth: int | None = None,
                 weight: float = 0.0, projector: torch.nn.Module | None = None, cue_dropout: float = 0.0,
                 person_loss_weight: float = 0.0):
        super().__init__(None, teacher, depth, weight, projector, cue_dropout, person_loss_weight)
        self.flow_shift = float(flow_shift)

    def __call__(self, student, encoder_hidden_states: torch.Tensor, latents: torch.Tensor, cond, sigma: torch.Tensor,
                 noise: torch.Tensor, cues: dict[str, torch.Tensor],
                 teacher_cues: dict[str, torch.Tensor] | None = None,
                 loss_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from ..model.wan_sampling import flow_input, wan_flow_loss

        loss_d, features = wan_flow_loss(student, latents, cond, encoder_hidden_states, cues, sigma, noise,
                                         (self.depth,) if self.aligns else (), dtype=self._dtype_of(student),
                                         weights=loss_weights)
        if not self.aligns:
            return loss_d, torch.zeros((), device=loss_d.device)
        if teacher_cues is None:
            raise ValueError("the cross-ID stage needs the teacher's cues (the clip's own)")
        dtype = self._dtype_of(self.teacher)
        with torch.no_grad():
            hidden, timestep = flow_input(self.teacher, latents, cond, sigma, noise)
            image = cond.image_embeds.to(dtype) if cond.image_embeds is not None else None
            h_t = self.teacher(hidden_states=hidden.to(dtype), timestep=timestep,
                               encoder_hidden_states=encoder_hidden_states.to(dtype),
                               encoder_hidden_states_image=image, feature_depths=(self.depth,),
                               features_only=True, **{k: v.to(dtype) for k, v in teacher_cues.items()}
                               ).features[self.depth]
        h_s = features[self.depth]
        if self.projector is not None:
            h_s = self.projector(h_s)
        return loss_d, s2x_loss(h_t, h_s)

    def inputs(self, model, batch: dict[str, torch.Tensor], generator: torch.Generator,
               sigma: torch.Tensor | None = None) -> dict:
        """One batch's inputs, drawn from `generator` in a fixed order (noise, noise levels, cue
        dropout); `sigma` (B,) fixes the noise levels instead (validation)."""
        from ..model.wan_sampling import animation_condition, animation_cues, animation_target, wan_form

        form = wan_form(model)
        device = batch["latents"].device
        lat = animation_target(batch["reference_latent"], batch["latents"], form)
        b = lat.shape[0]
        noise = torch.randn(lat.shape, generator=generator).to(device)
        drawn = flow_sigmas(b, self.flow_shift, generator)
        sigma = (drawn if sigma is None else sigma).to(device)
        keep = (torch.rand(b, generator=generator) >= self.cue_dropout).float().to(device).view(b, 1, 1, 1, 1)
        cues = {k: batch[k] * keep for k in CUE_KEYS}
        teacher_cues = None
        if self.aligns:
            teacher_cues = animation_cues(dict(pose_latents=batch["teacher_pose_latents"] * keep,
                                               face_latents=batch["teacher_face_latents"] * keep,
                                               body_mask=cues["body_mask"], face_mask=cues["face_mask"]), form)
        cond = animation_condition(batch["reference_latent"], batch["latents"].shape[1], batch)
        if form == "i2v" and cond.form != "i2v":
            raise InputError("a Wan2.1-I2V model trains on caches with the reference's condition_latents and "
                             "image_embeds: preprocess again with this config")
        weights = person_weights(animation_cues({"m": batch["body_mask"]}, form)["m"], self.person_loss_weight)
        return {"latents": lat, "cond": cond, "sigma": sigma, "noise": noise, "cues": animation_cues(cues, form),
                "teacher_cues": teacher_cues, "loss_weights": weights}


def make_objective(cfg, model, teacher=None, depth: int | None = None, projector=None) -> Same2XObjective:
    """The objective of a run's backbone: `Same2XObjective` (CogVideoX) or `WanSame2XObjective`."""
    from ..model import is_wan

    tc = cfg.train
    person = tc.person_loss_weight
    if is_wan(model):
        from ..model.wan_sampling import build_wan_scheduler

        if tc.sampler_timesteps > 0:
            raise InputError("train.sampler_timesteps is for the CogVideoX backbone (Wan draws its noise levels "
                             "as its checkpoint's flow_shift moves them); set it to 0")
        shift = build_wan_scheduler(cfg.model.pretrained).config.get("flow_shift", 1.0)
        return WanSame2XObjective(shift, teacher, depth, tc.s2x.weight, projector, cue_dropout=tc.cue_dropout,
                                  person_loss_weight=person)
    focus = sampler_timesteps(cfg) if tc.sampler_timesteps > 0 else None
    return Same2XObjective(make_scheduler(cfg.model.pretrained), teacher, depth, tc.s2x.weight, projector,
                           cue_dropout=tc.cue_dropout, person_loss_weight=person, focus_timesteps=focus,
                           focus_share=tc.sampler_timesteps)
