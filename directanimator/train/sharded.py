"""Resumable checkpoints of sharded runs (DeepSpeed ZeRO-1/2, FSDP2) as per-rank safetensors (no pickles).

Under DeepSpeed ZeRO and FSDP no process holds the whole optimizer state: each holds its partition
(ZeRO: a flat fp32 master partition per parameter group with its Adam moments; FSDP2: a dim-0 shard of
every parameter and of its moments, as DTensors). accelerate's `save_state` / DeepSpeed's
`save_checkpoint` / torch.distributed.checkpoint write these with pickle (`torch.save`, DCP's
`.metadata`), which this project does not ship or load. Here every process writes its own partition:

    CHECKPOINT/shards/rank_00000-of-00002.safetensors   rank 0's tensors (metadata: backend, world
    CHECKPOINT/shards/rank_00001-of-00002.safetensors   size, optimizer hyper-parameters, scalars)

and a resumed run reads back its own file: no gathering (the 5B model's AdamW state is about 72 GB in
fp32; gathered on one process it would need that much host memory), and exact, so a resumed run
continues the same loss curve. The partitioning follows the world size and the parameter order, so a
run resumes with the same number of processes and the same config (checked, with a clear error).

The gathered weights (`model/`, for `animate` and for a new run) are written beside as before.
DeepSpeed resumes its bf16 working weights from `model/` (ZeRO-1/2 keep them whole on every process);
FSDP2 resumes its fp32 parameter shards from the rank file. FSDP1 and ZeRO-3 are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import InputError

SHARDS = "shards"


def shard_file(folder: Path, rank: int, world: int) -> Path:
    return Path(folder) / SHARDS / f"rank_{rank:05d}-of-{world:05d}.safetensors"


def has_shards(folder: Path) -> bool:
    return (Path(folder) / SHARDS).is_dir()


def _zero_optimizer(optimizer):
    """DeepSpeed's ZeRO-1/2 optimizer under accelerate's wrappers."""
    seen, o = 0, optimizer
    while o is not None and seen < 6:
        if hasattr(o, "single_partition_of_fp32_groups"):
            return o
        if hasattr(o, "fp32_partitioned_groups_flat"):
            raise InputError("ZeRO stage 3 checkpoints are not supported: use ZeRO-2 "
                             "(configs/accelerate/deepspeed_zero2_8gpu.yaml) or FSDP2")
        o, seen = getattr(o, "optimizer", None), seen + 1
    raise InputError(f"cannot save the DeepSpeed optimizer state of {type(optimizer).__name__}: "
                     "only ZeRO-1/2's DeepSpeedZeroOptimizer is supported")


def _plain_optimizer(optimizer) -> torch.optim.Optimizer:
    while not isinstance(optimizer, torch.optim.Optimizer) and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def _hyper(groups) -> list[dict]:
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"} for g in groups]


def _set_hyper(groups, saved: list[dict]) -> None:
    if len(groups) != len(saved):
        raise InputError(f"the checkpoint has {len(saved)} optimizer parameter groups, this run {len(groups)}")
    for g, s in zip(groups, saved):
        for k, v in s.items():
            g[k] = tuple(v) if isinstance(g.get(k), tuple) else v


def _local(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        t = t.to_local()
    return t.detach().cpu().contiguous()


def _state_dicts_fsdp2(model, optimizer):
    from torch.distributed.checkpoint.state_dict import get_state_dict

    return get_state_dict(model, _plain_optimizer(optimizer))


def _check_fsdp2(model) -> None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover (torch < 2.6)
        FSDPModule = ()
    if not isinstance(model, FSDPModule) and any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules()):
        raise InputError("FSDP1 checkpoints are not supported: set fsdp_version: 2 in the accelerate config "
                         "(configs/accelerate/fsdp_8gpu.yaml)")


def save_shard(folder: Path, backend: str, model, optimizer, rank: int, world: int) -> Path:
    """Write this process's partition into folder/shards/ (call it on every process)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, object] = {}
    if backend == "deepspeed":
        zero = _zero_optimizer(optimizer)
        inner = zero.optimizer
        for i, part in enumerate(zero.single_partition_of_fp32_groups):
            tensors[f"group.{i}.fp32"] = _local(part)
            for name, value in inner.state.get(part, {}).items():
                if torch.is_tensor(value):
                    tensors[f"group.{i}.{name}"] = _local(value)
                else:
                    scalars[f"group.{i}.{name}"] = value
        groups = _hyper(inner.param_groups)
    elif backend == "fsdp":
        _check_fsdp2(model)
        msd, osd = _state_dicts_fsdp2(model, optimizer)
        for k, v in msd.items():
            tensors[f"model.{k}"] = _local(v)
        for fqn, st in osd["state"].items():
            for name, value in st.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{fqn}.{name}"] = _local(value)
                else:
                    scalars[f"optim.{fqn}.{name}"] = value
        groups = _hyper(osd["param_groups"])
    else:
        raise ValueError(f"unknown sharded backend {backend!r}")
    path = shard_file(folder, rank, world)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"backend": backend, "rank": str(rank), "world_size": str(world),
            "param_groups": json.dumps(groups), "scalars": json.dumps(scalars)}
    save_file(tensors, str(path), metadata=meta)
    return path


def _read_shard(folder: Path, backend: str, rank: int, world: int) -> tuple[dict[str, torch.Tensor], dict]:
    path = shard_file(folder, rank, world)
    if not path.is_file():
        found = sorted(p.name for p in (Path(folder) / SHARDS).glob("rank_*.safetensors"))
        raise InputError(f"cannot resume from {folder} with {world} processes: it was written by a run with "
                         f"another number of processes ({', '.join(found[:2]) or 'no shard files'}); "
                         "launch the same number, or start a new run from its weights (model/)")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("backend") != backend:
        raise InputError(f"cannot resume from {folder}: its optimizer state was written under "
                         f"{meta.get('backend')}, this run uses {backend}")
    return tensors, meta


def load_shard(folder: Path, backend: str, model, optimizer, rank: int, world: int) -> None:
    """Restore what save_shard wrote for this process (call it on every process)."""
    tensors, meta = _read_shard(folder, backend, rank, world)
    scalars = json.loads(meta.get("scalars", "{}"))
    groups = json.loads(meta.get("param_groups", "[]"))
    if backend == "deepspeed":
        zero = _zero_optimizer(optimizer)
        inner = zero.optimizer
        parts = zero.single_partition_of_fp32_groups
        for i, part in enumerate(parts):
            saved = tensors.get(f"group.{i}.fp32")
            if saved is None or saved.shape != part.shape:
                raise InputError(f"cannot resume from {folder}: parameter group {i} of rank {rank} holds "
                                 f"{None if saved is None else tuple(saved.shape)} values, this run "
                                 f"{tuple(part.shape)} (another model, trainable set or config)")
            with torch.no_grad():
                part.copy_(saved)
            st = {}
            for key, value in tensors.items():
                pre = f"group.{i}."
                if key.startswith(pre) and key != f"group.{i}.fp32":
                    st[key[len(pre):]] = value.to(part.device)
            for key, value in scalars.items():
                if key.startswith(f"group.{i}."):
                    st[key[len(f"group.{i}."):]] = value
            inner.state[part] = st
        if len(tensors) and any(k.startswith(f"group.{len(parts)}.") for k in tensors):
            raise InputError(f"cannot resume from {folder}: it has more parameter groups than this run")
        _set_hyper(inner.param_groups, groups)
    elif backend == "fsdp":
        from torch.distributed.checkpoint.state_dict import set_state_dict
        from torch.distributed.tensor import DTensor

        _check_fsdp2(model)
        msd, osd = _state_dicts_fsdp2(model, optimizer)

        def restore(template, key):
            if key not in tensors:
                raise InputError(f"cannot resume from {folder}: {key} is not in rank {rank}'s shard")
            value = tensors[key]
            if isinstance(template, DTensor):
                local = template.to_local()
                if value.shape != local.shape:
                    raise InputError(f"cannot resume from {folder}: {key} is {tuple(value.shape)} on rank {rank}, "
                                     f"this run {tuple(local.shape)}")
                return DTensor.from_local(value.to(local.device, local.dtype), template.device_mesh,
                                          template.placements, shape=template.shape, stride=template.stride(),
                                          run_check=False)
            return value.to(template.device, template.dtype)

        msd = {k: restore(v, f"model.{k}") for k, v in msd.items()}
        state = {}
        for fqn, st in osd["state"].items():
            state[fqn] = {name: (restore(v, f"optim.{fqn}.{name}") if torch.is_tensor(v)
                                 else scalars.get(f"optim.{fqn}.{name}", v)) for name, v in st.items()}
        pg = [dict(g) for g in osd["param_groups"]]
        _set_hyper(pg, groups)
        set_state_dict(model, _plain_optimizer(optimizer), model_state_dict=msd,
                       optim_state_dict={"state": state, "param_groups": pg})
    else:
        raise ValueError(f"unknown sharded backend {backend!r}")
