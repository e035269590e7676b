"""Finding and loading trained transformers: run folders, checkpoints, model folders. Inference and
training both use it; it imports nothing from training (the pipeline must not).

    RUN/checkpoints/step_N/model/   a training checkpoint's model (train/checkpoint.py writes them)
    RUN/best/model/                 the best by held-out validation (train/validation.py)
    PIPELINE/transformer/           a saved pipeline's model
"""

from __future__ import annotations

import math
from pathlib import Path

from ..config import Config
from ..errors import InputError
from . import transformer_kwargs
from .transformer import CueFusionTransformer3D

PREFIX = "step_"


def checkpoints_of(run: Path) -> list[Path]:
    folder = Path(run) / "checkpoints"
    if not folder.is_dir():
        return []
    done = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(".partial")
            and (p / "state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run: Path) -> Path | None:
    found = checkpoints_of(run)
    return found[-1] if found else None


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory (its latest checkpoint), a checkpoint directory, or a model directory -> the
    folder holding the transformer's config.json and weights."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"checkpoint not found: {p}")
    if (p / "transformer" / "config.json").is_file():  # a pipeline folder
        p = p / "transformer"
    if (p / "checkpoints").is_dir():
        latest = latest_checkpoint(p)
        if latest is None:
            raise InputError(f"run {p} has no complete checkpoint yet")
        p = latest
    if (p / "model" / "config.json").is_file():
        p = p / "model"
    if not (p / "config.json").is_file():
        raise InputError(f"{p} is not a checkpoint: config.json missing")
    if not any(p.glob("*.safetensors")):
        raise InputError(f"{p} is not a checkpoint: no *.safetensors weight file")
    return p


def check_compatible(model: CueFusionTransformer3D, cfg: Config, latent_channels: int, what: str) -> None:
    """A checkpoint must have been made for this config's model (backbone, sizes, injection, switches)."""
    from . import is_wan

    made = "wan" if is_wan(model) else "cogvideox"
    if made != cfg.model.backbone:
        raise InputError(f"{what} is a {made} model; this config has model.backbone {cfg.model.backbone}")
    if cfg.model.pretrained:
        return
    want = transformer_kwargs(cfg.model, latent_channels)
    for key, value in want.items():
        have = model.config.get(key)
        if have != value and not (isinstance(value, float) and have is not None and math.isclose(have, value)):
            raise InputError(f"{what} was made for another config: model {key} = {have!r}, this config has {value!r}")


def transformer_class(folder: Path) -> type:
    """The CueFusion class a saved model folder holds (its config.json's `_class_name`): CogVideoX's
    or Wan's."""
    import json

    name = json.loads((folder / "config.json").read_text()).get("_class_name")
    if name == "WanCueFusionTransformer3D":
        from .wan import WanCueFusionTransformer3D

        return WanCueFusionTransformer3D
    return CueFusionTransformer3D


def load_transformer(path: str | Path, dtype=None, merge_lora: bool = True) -> CueFusionTransformer3D:
    """The transformer of a run, checkpoint or model folder, in `dtype` (default: as stored). A
    partial run's adapter (a sibling `adapter/` folder, model/adapters.py) is applied: its LoRA merged
    into the weights when `merge_lora`, else kept as live LoRA layers."""
    from .adapters import ADAPTER_DIR, load_adapter

    folder = resolve_model_dir(path)
    cls = transformer_class(folder)
    try:
        if dtype is not None:
            model = cls.from_pretrained(str(folder), torch_dtype=dtype)
        else:
            model = cls.from_pretrained(str(folder))
        if (folder.parent / ADAPTER_DIR / "adapter.json").is_file():
            load_adapter(model, folder.parent / ADAPTER_DIR, merge=merge_lora)
        return model
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot load the checkpoint in {folder}: {str(exc).splitlines()[0]}") from None


