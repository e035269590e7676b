"""Training checkpoints as plain files: safetensors for tensors, JSON for the rest (no pickles).

    RUN/checkpoints/step_0000100/
      model/                     save_pretrained of the transformer (config.json + safetensors)
      optimizer.safetensors      every optimizer state tensor, keyed state.<param index>.<name>
      optimizer.json             the optimizer's param_groups
      scheduler.json             the LR scheduler's state_dict
      rng.safetensors            torch CPU (and CUDA) generator states
      ema.safetensors            the EMA weights, when EMA is on
      state.json                 step, data position, counters
      shards/                    instead of optimizer.*, under DeepSpeed ZeRO-1/2 and FSDP2: each process's
                                 partition of the optimizer state (train/sharded.py)

Written into `step_N.partial/` and renamed, so a checkpoint directory is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError  # noqa: F401 (used below)
from ..model.loading import PREFIX, checkpoints_of, latest_checkpoint, resolve_model_dir  # noqa: F401 (re-exported)


def _flatten(prefix: str, value, tensors: dict, scalars: dict) -> None:
    """Nested state (bitsandbytes keeps its 8-bit moments in a dict inside a parameter's state) as
    flat keys, one level per "/"."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}", v, tensors, scalars)
    elif torch.is_tensor(value):
        tensors[prefix] = value.detach().cpu().contiguous()
    else:
        scalars[prefix] = value


def _nest(state: dict, idx: int, name: str, value) -> None:
    *path, leaf = name.split("/")
    d = state.setdefault(idx, {})
    for part in path:
        d = d.setdefault(part, {})
    d[leaf] = value


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            flat_t, flat_s = {}, {}
            _flatten(name, value, flat_t, flat_s)
            tensors.update({f"state.{idx}.{k}": v for k, v in flat_t.items()})
            scalars.update({f"{idx}.{k}": v for k, v in flat_s.items()})
    seen: set[int] = set()
    for k, v in tensors.items():  # safetensors refuses shared storage (bitsandbytes shares its qmaps)
        if v.data_ptr() in seen:
            tensors[k] = v.clone()
        seen.add(v.data_ptr())
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        _nest(state, int(idx), name, value)
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        _nest(state, int(idx), name, value)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state() -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"torch_cuda_{i}"] = s
    return out


def partial_folder(run: Path, step: int) -> Path:
    """Where step `step`'s checkpoint is written before it is renamed into place."""
    return Path(run) / "checkpoints" / f"{PREFIX}{step:07d}.partial"


def start_partial(run: Path, step: int) -> Path:
    """An empty partial folder (a leftover of a killed run is removed first); the main process only."""
    tmp = partial_folder(run, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def save_checkpoint(run: Path, step: int, model, optimizer, scheduler, state: dict,
                    ema: dict[str, torch.Tensor] | None = None, keep_last: int = 2, save_model=None,
                    started: bool = False) -> Path:
    """`optimizer` None = not saved here (its state is sharded across processes: DeepSpeed, FSDP; each
    process has written its part into the partial folder with train/sharded.py, `started` True);
    `save_model(folder, model)` writes folder/model/ (and folder/adapter/ of a partial run) instead
    of save_pretrained."""
    final = Path(run) / "checkpoints" / f"{PREFIX}{step:07d}"
    tmp = partial_folder(run, step) if started else start_partial(run, step)
    if save_model is not None:
        save_model(tmp, model)
    else:
        model.save_pretrained(tmp / "model", safe_serialization=True)
    if optimizer is not None:
        tensors, meta = _optimizer_to_files(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
    save_file({k: v.contiguous() for k, v in rng_state().items()}, str(tmp / "rng.safetensors"))
    if ema is not None:
        save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last > 0:
        for old in checkpoints_of(run)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, model, optimizer, scheduler, sharded: bool = False,
                    weights: bool = True) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """Restore everything save_checkpoint wrote; returns (state, ema or None). `sharded`: the
    optimizer state is in shards/ (restored by train/sharded.py on every process, not here);
    `weights` False: the model's weights come from the shards too (FSDP2)."""
    folder = Path(folder)
    from .sharded import has_shards

    if sharded and not has_shards(folder):
        raise InputError(f"cannot resume from {folder} under DeepSpeed/FSDP: it holds no sharded optimizer state "
                         "(written by a run with another backend, or by a version before resumable sharded runs); "
                         "start a new run from its weights instead")
    if not sharded and not (folder / "optimizer.safetensors").is_file():
        raise InputError(f"cannot resume from {folder}: it holds no optimizer state"
                         + (" (a DeepSpeed/FSDP run's partitions: launch it with the same accelerate config and "
                            "number of processes)" if has_shards(folder) else "")
                         + "; start a new run from its weights instead")
    try:
        from ..model.adapters import ADAPTER_DIR, load_adapter, load_plain_state_dict

        if weights:
            tensors = {}
            for f in sorted((folder / "model").glob("*.safetensors")):
                tensors.update(load_file(str(f)))
            missing, unexpected = load_plain_state_dict(model, tensors)
            if missing or unexpected:
                raise InputError(f"checkpoint {folder} was made for another model: missing {missing[:2]}, "
                                 f"unexpected {unexpected[:2]}")
            if (folder / ADAPTER_DIR).is_dir():  # a partial run: its LoRA layers, live (training goes on)
                load_adapter(model, folder / ADAPTER_DIR, merge=False)
        if not sharded:
            optimizer.load_state_dict(_optimizer_from_files(load_file(str(folder / "optimizer.safetensors")),
                                                            json.loads((folder / "optimizer.json").read_text())))
        scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
        rng = load_file(str(folder / "rng.safetensors"))
        torch.set_rng_state(rng["torch_cpu"])
        if torch.cuda.is_available():
            states = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
        ema = load_file(str(folder / "ema.safetensors")) if (folder / "ema.safetensors").is_file() else None
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot resume from {folder}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return state, ema
