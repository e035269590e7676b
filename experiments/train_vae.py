"""A learned latent space for the toy models: diffusers' AutoencoderKLCogVideoX at a tiny width,
trained on the puppet world's videos, so the toy runs the real codec path (its causal first frame,
scaling factor, posterior draws) instead of the hand-made DCT codec.

    .venv/bin/python experiments/train_vae.py --world out/claims/world --out out/vae [--steps 3000]
        [--width 16] [--latent-channels 16] [--frames 9] [--batch 4] [--lr 3e-4] [--kl 1e-6] [--resume]

The folder written, OUT/vae/ (config.json + safetensors), is what `model.codec.kind: cogvideox` with
`model.codec.path: OUT` loads. 3 blocks: 4x spatial and 4x temporal compression, the DCT codec's grid
(a 64 px, 9-frame window is 16 x 16 x 3 latents). Loss: mean squared error of the round trip plus
`kl` x the posterior's KL. The scaling factor is set at the end to 1 / the latents' standard
deviation over training windows, as Stable Diffusion's and CogVideoX's were chosen. OUT/train.json
records the command, the steps, the CPU seconds (carried over resumes) and the loss curve; a resumed
run starts a new optimizer from the saved weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def build_vae(width: int, latent_channels: int, size: int):
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 3, up_block_types=("CogVideoXUpBlock3D",) * 3,
        block_out_channels=(width, 2 * width, 2 * width), latent_channels=latent_channels, layers_per_block=1,
        norm_num_groups=min(8, width), temporal_compression_ratio=4, sample_height=size, sample_width=size,
        scaling_factor=1.0)


class Windows:
    """Random `frames`-frame windows of the world's training clips, (B, 3, T, H, W) in [-1, 1]."""

    def __init__(self, world: Path, frames: int, seed: int):
        from directanimator.data.format import clip_dir, read_manifest

        self.videos = [clip_dir(world, r.clip_id) / "video.mp4" for r in read_manifest(world) if r.split == "train"]
        if not self.videos:
            raise SystemExit(f"error: {world} has no training clips (make a world with `directanimator synth`)")
        self.frames, self.rng = frames, np.random.default_rng(seed)

    def batch(self, size: int) -> torch.Tensor:
        from directanimator.video import iter_frames
        from directanimator.windows import video_tensor

        out = []
        for i in self.rng.integers(0, len(self.videos), size):
            clip = np.stack(list(iter_frames(self.videos[i])))
            s = int(self.rng.integers(0, len(clip) - self.frames + 1))
            out.append(video_tensor(clip[s:s + self.frames])[0])
        return torch.stack(out).permute(0, 2, 1, 3, 4)


def train(vae, data: Windows, steps: int, batch: int, lr: float, kl: float, log: list, start: int = 0) -> None:
    """`steps` optimizer steps (AdamW, 50 warm-up steps), the loss appended to `log` every 10."""
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    vae.train()
    for step in range(start + 1, start + steps + 1):
        x = data.batch(batch)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = (recon - x).square().mean()
        loss = mse + kl * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0 or step == start + steps:
            m, total = mse.item(), loss.item()
            log.append({"step": step, "mse": round(m, 6), "loss": round(total, 6)})
            print(f"step {step}: mse {m:.5f}", flush=True)


@torch.no_grad()
def scaling_factor(vae, data: Windows, windows: int = 32) -> float:
    """1 / the standard deviation of the posterior means over `windows` training windows."""
    vae.eval()
    z = torch.cat([vae.encode(data.batch(4)).latent_dist.mode().flatten() for _ in range(max(1, windows // 4))])
    return float(1.0 / z.std())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--latent-channels", type=int, default=16)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/vae with a new optimizer")
    args = ap.parse_args(argv)
    from diffusers import AutoencoderKLCogVideoX

    out, record_file = Path(args.out), Path(args.out) / "train.json"
    record = json.loads(record_file.read_text()) if args.resume and record_file.is_file() else \
        {"commands": [], "steps": 0, "cpu_seconds": 0.0, "log": []}
    torch.manual_seed(args.seed + record["steps"])
    vae = AutoencoderKLCogVideoX.from_pretrained(str(out / "vae")) if args.resume else \
        build_vae(args.width, args.latent_channels, args.size)
    data = Windows(Path(args.world), args.frames, args.seed + record["steps"])
    cpu0 = time.process_time()
    train(vae, data, args.steps, args.batch, args.lr, args.kl, record["log"], start=record["steps"])
    vae.register_to_config(scaling_factor=scaling_factor(vae, data))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "vae.partial"
    vae.save_pretrained(str(tmp), safe_serialization=True)
    if (out / "vae").exists():
        import shutil

        shutil.rmtree(out / "vae")
    tmp.replace(out / "vae")
    record["steps"] += args.steps
    record["cpu_seconds"] = round(record["cpu_seconds"] + time.process_time() - cpu0, 1)
    record["commands"].append("python experiments/train_vae.py " + " ".join(sys.argv[1:] if argv is None else argv))
    record["scaling_factor"] = vae.config.scaling_factor
    record_file.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out / 'vae'} ({record['steps']} steps, scaling factor {vae.config.scaling_factor:.4f}, "
          f"{record['cpu_seconds'] / 3600:.2f} CPU hours in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
