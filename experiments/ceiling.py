"""What the toy codec allows: oracle outputs built from the true answer, scored with the four puppet
metrics next to the still photo. If even an oracle that gets only the codec's average (DC) channels
right cannot clear the goal on a metric, no model of this latent space can do it by getting only those
right either.

    .venv/bin/python experiments/ceiling.py [--world out/demo_model/world] [--triples 20] [--config configs/demo.yaml]

A config whose codec is a learned one (`model.codec.kind: cogvideox`, `model.codec.path`: a VAE from
experiments/train_vae.py) gives the same rows but the DC-only ones.

Oracles (per triple, all frames):
  codec(truth)               the true answer through the codec (its round trip)
  DC-only codec(truth)       only the 3 colour averages per 4x4 cell (first temporal frequency)
  exact bg + X               the true frame outside the moving region (true + reference person,
                             dilated 2 px), X inside it: X = codec round trip, 1.5 px blur, DC-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def dc_channels(codec, lat):
    """The DCT codec's latents (B, F, C, h, w) with only the 3 colour averages of each cell kept:
    channels are laid out (temporal freq, colour, u, v), the DC of each colour at temporal freq 0."""
    import torch

    keep = torch.zeros(lat.shape[2])
    keep[[c * codec.keep_spatial ** 2 for c in range(3)]] = 1
    return lat * keep.view(1, 1, -1, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default="out/demo_model/world")
    ap.add_argument("--triples", type=int, default=20)
    ap.add_argument("--config", default="configs/demo.yaml")
    args = ap.parse_args()
    import cv2
    import torch

    from directanimator.config import load_config
    from directanimator.windows import video_tensor
    from directanimator.data.format import clip_dir, read_annotations
    from directanimator.eval.puppet import moving_region, puppet_metrics
    from directanimator.model import build_codec
    from directanimator.video import iter_frames

    codec = build_codec(load_config(ROOT / args.config).model)
    world = ROOT / args.world

    def u8(v):
        return ((v.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    rows: dict[str, list] = {}
    for line in (world / "cross_id_pairs.jsonl").read_text().splitlines()[: args.triples]:
        tr = json.loads(line)
        truth = np.stack(list(iter_frames(clip_dir(world, tr["ground_truth"]) / "video.mp4")))
        ref = next(iter_frames(clip_dir(world, tr["reference"]) / "video.mp4"))
        gt, ra = read_annotations(world, tr["ground_truth"]), read_annotations(world, tr["reference"])
        lat = codec.encode(video_tensor(truth), torch.Generator().manual_seed(0))
        round_trip = u8(codec.decode(lat)[0])
        region = moving_region(gt["masks"], ra["masks"][0])[..., None]
        blur = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in truth])
        oracles = [("still photo (trivial answer)", np.repeat(ref[None], len(truth), 0)), ("codec(truth)", round_trip),
                   ("exact background + codec(truth) person", np.where(region, round_trip, truth)),
                   ("exact background + 1.5 px blurred person", np.where(region, blur, truth))]
        if hasattr(codec, "keep_spatial"):  # the DCT codec: its colour averages alone (a learned codec has none)
            dc_only = u8(codec.decode(dc_channels(codec, lat))[0])
            oracles += [("DC-only codec(truth)", dc_only), ("exact background + DC-only person",
                                                             np.where(region, dc_only, truth))]
        for name, video in oracles:
            rows.setdefault(name, []).append(puppet_metrics(video, truth, gt["masks"], ra["masks"][0], ref))
    print(f"| oracle ({args.triples} triples of {args.world}) | SSIM | PSNR | person PSNR | moving PSNR | motion IoU |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        m = {k: float(np.mean([x[k] for x in r if x[k] is not None])) for k in r[0]}
        print(f"| {name} | {m['ssim']:.3f} | {m['psnr']:.2f} | {m['person_psnr']:.2f} | {m['moving_psnr']:.2f} | "
              f"{m['motion_iou']:.3f} |")


if __name__ == "__main__":
    main()
