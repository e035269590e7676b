"""Held-out validation during training, on cross-ID triples with their true answer (puppet world).

The puppet world knows what a cross-ID animation should look like (identity B performing the
driving clip's motion in B's scene), so a run can be judged on what it is for, not only on its
training loss. Every `train.validation.every` steps:

  val_loss       the denoising loss on the triples' first windows, with fixed noise and fixed
                 timesteps (the same numbers at every evaluation, so the curve is comparable)
  val_ssim, val_psnr, val_person_psnr, val_moving_psnr
                 DDIM samples (`sample_steps` steps, fixed noise) decoded and compared with the
                 true frames (eval/puppet.py), next to the trivial answers on the same windows
                 (logged once, at step 0)

With `train.ema_decay` > 0 the EMA weights are validated (and kept), as diffusion models are usually
sampled from their EMA. Lines go to RUN/validation.jsonl; the checkpoint with the best `select` metric is kept in RUN/best/
(model/ as a checkpoint's, plus best.json), so a run is chosen by a held-out metric, not by its
training loss. The windows are cached in DATASET/cache/<key>/validation-<n>.safetensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..cues.extract import extract_cues_in_memory
from ..cues.detectors import Detectors
from ..data.cache import cache_key, cache_root, encode_windows, load_clip_frames, write_entry
from ..data.format import clip_dir
from ..errors import InputError
from ..eval.puppet import mean_metrics, puppet_metrics, trivial_answers
from ..model.codec import LatentCodec
from ..model.sampling import build_scheduler, diffusion_target, sample_latents
from ..model.wan_sampling import REFERENCE_KEYS
from .losses import Same2XObjective, add_noise, make_scheduler

LOSS_TIMESTEPS = (49, 199, 399, 599, 799, 949)
TENSOR_KEYS = ("latents", "reference_latent", "pose_latents", "face_latents", "body_mask", "face_mask")


@dataclass
class ValidationSet:
    tensors: dict[str, torch.Tensor]  # ENTRY_KEYS, batched over triples (N, ...)
    truth: np.ndarray                 # (N, F, H, W, 3) uint8, the true answer
    truth_masks: np.ndarray           # (N, F, H, W) bool
    reference_masks: np.ndarray       # (N, H, W) bool
    references: np.ndarray            # (N, H, W, 3) uint8
    driving: np.ndarray               # (N, F, H, W, 3) uint8
    driving_masks: np.ndarray         # (N, F, H, W) bool

    def __len__(self) -> int:
        return len(self.truth)


def build_validation_set(dataset: str | Path, cfg: Config, codec: LatentCodec, triples: int) -> ValidationSet:
    """The first window of each of the first `triples` cross-ID triples (cached)."""
    dataset = Path(dataset)
    pairs_file = dataset / "cross_id_pairs.jsonl"
    if not pairs_file.is_file():
        raise InputError(f"validation dataset {dataset} has no cross_id_pairs.jsonl (make one with `directanimator synth`)")
    pairs = [json.loads(x) for x in pairs_file.read_text().splitlines() if x.strip()][:triples]
    if not pairs:
        raise InputError(f"validation dataset {dataset}: no cross-ID triples")
    path = cache_root(dataset, cfg) / f"validation-{len(pairs)}.safetensors"
    frames = cfg.model.frames
    if path.is_file():
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        tensors = {k: torch.from_numpy(arrays[k]) for k in TENSOR_KEYS + REFERENCE_KEYS if k in arrays}
        return ValidationSet(tensors, arrays["truth"], arrays["truth_masks"].astype(bool),
                             arrays["reference_masks"].astype(bool), arrays["references"], arrays["driving"],
                             arrays["driving_masks"].astype(bool))
    cues_cfg = replace(cfg.cues, size=cfg.model.size)
    parts: dict[str, list] = {}
    for tr in pairs:
        ref = load_clip_frames(clip_dir(dataset, tr["reference"]), cfg.model.size)
        drv = load_clip_frames(clip_dir(dataset, tr["driving"]), cfg.model.size)
        gt = load_clip_frames(clip_dir(dataset, tr["ground_truth"]), cfg.model.size)
        if len(drv.frames) < frames or len(gt.frames) < frames:
            raise InputError(f"validation triple {tr['driving']}: fewer than model.frames = {frames} frames")
        ref_mask = ref.masks[0] > 0.5
        cues = extract_cues_in_memory(
            ref.frames[0], list(drv.frames[:frames]), cues_cfg, fps=drv.fps,
            **dict(Detectors.from_annotations(drv, ref, frames=frames,
                                              skeleton_errors=cues_cfg.pose.skeleton_errors).kwargs(),
                   reference_mask=ref_mask))
        t = encode_windows(codec, gt.frames, cues, [0], frames, cues.reference)
        for k in TENSOR_KEYS + REFERENCE_KEYS:  # the last for a Wan2.1-I2V model only
            if k in t:
                parts.setdefault(k, []).append(t[k][0])
        for k, v in (("truth", gt.frames[:frames]), ("truth_masks", gt.masks[:frames] > 0.5),
                     ("reference_masks", ref_mask), ("references", ref.frames[0]),
                     ("driving", drv.frames[:frames]), ("driving_masks", drv.masks[:frames] > 0.5)):
            parts.setdefault(k, []).append(np.asarray(v))
    tensors = {k: torch.stack(parts[k]).contiguous() for k in TENSOR_KEYS + REFERENCE_KEYS if k in parts}
    arrays = {k: np.stack(parts[k]) for k in ("truth", "truth_masks", "reference_masks", "references", "driving",
                                              "driving_masks")}
    store = {**tensors, **{k: torch.from_numpy(v.astype(np.uint8)) for k, v in arrays.items()}}
    write_entry(path, store, {"key": cache_key(cfg), "triples": [p["ground_truth"] for p in pairs]})
    return ValidationSet(tensors, arrays["truth"], arrays["truth_masks"], arrays["reference_masks"],
                         arrays["references"], arrays["driving"], arrays["driving_masks"])


def _uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


SAMPLE_KEYS = ("ssim", "psnr", "person_psnr", "moving_psnr", "motion_iou")


def baseline_metrics(vs: ValidationSet) -> dict[str, dict[str, float]]:
    """The trivial answers on the validation windows."""
    rows: dict[str, list[dict]] = {}
    for i in range(len(vs)):
        answers = trivial_answers(vs.references[i], vs.reference_masks[i], vs.driving[i], vs.driving_masks[i])
        for name, video in answers.items():
            rows.setdefault(name, []).append(puppet_metrics(video, vs.truth[i], vs.truth_masks[i],
                                                            vs.reference_masks[i], vs.references[i]))
    return {k: mean_metrics(v, SAMPLE_KEYS) for k, v in rows.items()}


def _losses(model, part: dict, enc: torch.Tensor, gen: torch.Generator, objective) -> list[float]:
    """The trainer's denoising loss of one batch of windows at each of LOSS_TIMESTEPS (summed over
    the batch): CogVideoX's at those timesteps, Wan's at the noise levels t / 1000; unweighted."""
    from .. import model as model_pkg

    b, device = part["latents"].shape[0], part["latents"].device
    cues = {k: part[k] for k in ("pose_latents", "face_latents", "body_mask", "face_mask")}
    if model_pkg.is_wan(model):
        out = []
        for t_value in LOSS_TIMESTEPS:
            inputs = objective.inputs(model, part, gen, sigma=torch.full((b,), t_value / 1000.0))
            inputs["loss_weights"] = None  # the plain mean, comparable between runs (train.person_loss_weight)
            out.append(objective(model, enc, **inputs)[0].item() * b)
        return out
    scheduler = objective.scheduler
    layout = model_pkg.reference_layout_of(model)
    target = diffusion_target(model, part["latents"], part["reference_latent"])
    pad = model_pkg.front_padding(target.shape[1], model.config.get("patch_size_t"))  # as the trainer
    target = model_pkg.pad_front(target, pad)
    padded_cues = {k: model_pkg.pad_front(v, pad) for k, v in cues.items()}
    out = []
    for t_value in LOSS_TIMESTEPS:
        noise = torch.randn(target.shape, generator=gen).to(device)
        t = torch.full((b,), t_value, dtype=torch.long, device=device)
        x = model_pkg.i2v_hidden_states(add_noise(target, noise, t, scheduler), part["reference_latent"], layout)
        loss, _ = objective(model, x, enc, t, padded_cues, target, noise, pad=pad)  # the trainer's loss
        out.append(loss.item() * b)
    return out


@torch.no_grad()
def validate(model, vs: ValidationSet, codec: LatentCodec, encoder_hidden_states: torch.Tensor, steps: int,
             device: torch.device | str = "cpu", seed: int = 0, batch: int = 8, sampler=None,
             objective=None) -> dict[str, float]:
    """val_loss and the sample metrics (module docstring); `sampler` defaults to CogVideoX's DDIM
    scheduler, `objective` (whose denoising term is scored) to CogVideoX's. The model is left in the
    mode it had."""
    was_training = model.training
    model.eval()
    objective = objective if objective is not None else Same2XObjective(make_scheduler())
    sampler = sampler if sampler is not None else build_scheduler("ddim")
    losses, rows = [], []
    n = len(vs)
    for s in range(0, n, batch):
        part = {k: v[s:s + batch].to(device) for k, v in vs.tensors.items()}
        b = part["latents"].shape[0]
        enc = encoder_hidden_states.to(device).expand(b, -1, -1)
        cues = {k: part[k] for k in ("pose_latents", "face_latents", "body_mask", "face_mask") + REFERENCE_KEYS
                if k in part}
        gen = torch.Generator().manual_seed(seed * 7919 + s)
        losses += _losses(model, part, enc, gen, objective)
        lat = sample_latents(model, sampler, part["reference_latent"], cues, enc, steps, gen)
        video = codec.decode(lat.float().cpu())
        for j in range(b):
            i = s + j
            rows.append(puppet_metrics(_uint8_frames(video[j]), vs.truth[i], vs.truth_masks[i], vs.reference_masks[i],
                                       vs.references[i]))
    if was_training:
        model.train()
    out = {"val_loss": float(np.sum(losses) / (n * len(LOSS_TIMESTEPS)))}
    out.update({f"val_{k}": v for k, v in mean_metrics(rows, SAMPLE_KEYS).items()})
    return out
