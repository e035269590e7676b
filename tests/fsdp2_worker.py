"""One process of the FSDP2 checkpoint test (tests/train/test_sharded.py), launched with torch.distributed.run
on CPU (gloo). accelerate runs FSDP only on GPUs, so this applies FSDP2 as accelerate's FSDP2 config
does (configs/accelerate/fsdp_8gpu.yaml: fully_shard per CogVideoXBlock and at the root, bf16 compute,
fp32 reduction and fp32 sharded parameters) to the tiny CueFusion transformer and trains it with the
trainer's optimizer, saving and loading with train/sharded.py, the functions the trainer calls.

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp2_worker.py MODE CKPT OUT.json [WAN_FOLDER]
    MODE straight: 4 steps, the shards written after step 2 into CKPT; resume: load CKPT, steps 3-4
    WAN_FOLDER: the Wan backbone from that folder instead (fully_shard per WanTransformerBlock, as
    configs/accelerate/fsdp_wan_8gpu.yaml wraps it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def batch(step: int, rank: int):
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(1, 3, 48, 16, 16, generator=g)
    cues = {k: torch.randn(1, 3, c, 16, 16, generator=g) for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    return (x, torch.randn(1, 8, 32, generator=g), torch.tensor([int(torch.randint(0, 1000, (1,), generator=g))])), cues


def wan_batch(step: int, rank: int):
    """The same on the tiny Wan2.2-TI2V transformer, in Wan's layout (B, C, F, H, W)."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(1, 6, 3, 4, 4, generator=g)
    cues = {k: torch.randn(1, c, 3, 4, 4, generator=g) for k, c in
            (("pose_latents", 6), ("face_latents", 6), ("body_mask", 1), ("face_mask", 1))}
    t = torch.tensor([int(torch.randint(0, 1000, (1,), generator=g))])
    return (x, t, torch.randn(1, 8, 16, generator=g)), cues  # Wan's forward: states, timestep, text


def build(wan_folder: str | None):
    """(model, its block class, the batch maker)."""
    from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
    from diffusers.models.transformers.transformer_wan import WanTransformerBlock

    from directanimator.config import load_config
    from directanimator.model import build_transformer
    from directanimator.model.wan import WanCueFusionTransformer3D

    torch.manual_seed(0)
    if wan_folder:
        return WanCueFusionTransformer3D.from_wan(wan_folder), WanTransformerBlock, wan_batch
    return build_transformer(load_config("configs/tiny.yaml").model, 24), CogVideoXBlock, batch


def main() -> None:
    mode, ckpt, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from directanimator.train.sharded import load_shard, save_shard

    model, block_class, make_batch = build(sys.argv[4] if len(sys.argv) > 4 else None)
    with torch.no_grad():  # the cue injection off its zero initialisation, so every weight trains
        for n, p in model.named_parameters():
            if n.startswith("cue_fusion") and n.endswith("bias"):
                p.add_(0.1)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for m in model.modules():
        if isinstance(m, block_class):
            fully_shard(m, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    first = 1
    if mode == "resume":
        load_shard(ckpt, "fsdp", model, optimizer, rank, world)
        first = 3
    losses = []
    for step in range(first, 5):
        args, cues = make_batch(step, rank)
        loss = model(*args, **cues).sample.float().square().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        red = loss.detach().clone()
        dist.all_reduce(red)
        losses.append(red.item())
        if mode == "straight" and step == 2:
            save_shard(ckpt, "fsdp", model, optimizer, rank, world)
            dist.barrier()
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        import hashlib

        h = hashlib.sha1()
        for k, v in full.items():
            h.update(k.encode())
            h.update(v.contiguous().view(torch.uint8).numpy().tobytes())
        shard_types = sorted({type(p).__name__ for p in model.parameters()})
        out.write_text(json.dumps({"losses": losses, "weights_sha1": h.hexdigest(), "world": world,
                                   "parameter_types": shard_types}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
