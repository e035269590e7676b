"""Finding a model to animate with: the embedded demo model, a pipeline folder, a training run or
one checkpoint; the compute dtype; the inference scheduler."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import Config, from_dict, load_config
from ..errors import InputError
from ..model.sampling import build_scheduler

EMBEDDED = Path(__file__).resolve().parents[1] / "assets" / "demo_model"


def resolve_checkpoint(path: str | Path | None) -> tuple[Path, Config]:
    """A pipeline folder (config.yaml + transformer/), a training run (config.yaml + checkpoints/),
    or one checkpoint (model/ + state.json) -> (transformer folder, its config)."""
    from ..model.loading import resolve_model_dir

    if path is None:
        path = EMBEDDED
        if not (EMBEDDED / "transformer" / "config.json").is_file():
            raise InputError(f"the embedded demo model is missing from {EMBEDDED}; pass --checkpoint DIR")
    p = Path(path)
    if (p / "transformer" / "config.json").is_file():
        model_dir = resolve_model_dir(p / "transformer")
    else:
        model_dir = resolve_model_dir(p)
    cfg = None
    for cand in (p / "config.yaml", model_dir.parent / "config.yaml", model_dir.parent.parent.parent / "config.yaml"):
        if cand.is_file():
            cfg = load_config(cand)
            break
    if cfg is None and (model_dir.parent / "state.json").is_file():
        cfg = from_dict(Config, json.loads((model_dir.parent / "state.json").read_text()).get("config"))
    if cfg is None:
        raise InputError(f"{p}: no config.yaml next to the checkpoint (needed to rebuild its codec and cues)")
    codec = cfg.model.codec
    if codec.kind == "cogvideox" and not codec.path and not cfg.model.pretrained:
        # a toy model's own VAE, saved in its pipeline folder as a real model folder holds vae/
        folder = next((c for c in (p, model_dir.parent) if (c / "vae" / "config.json").is_file()), None)
        if folder is not None:
            codec.path = str(folder)
    return model_dir, cfg


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """None or "auto": bfloat16 on CUDA (what CogVideoX runs in), float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise InputError(f"--dtype must be one of auto, float32, bfloat16, float16, got {dtype!r}")
    return names[dtype]


def make_inference_scheduler(kind: str, pretrained: str | None = None, backbone: str = "cogvideox"):
    return build_scheduler(kind, pretrained, backbone)
