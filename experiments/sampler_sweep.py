"""Denoising steps and scheduler of a trained model, chosen on its held-out validation triples (the
training world's cross-ID triples, never the worlds the final evaluation uses).

    .venv/bin/python experiments/sampler_sweep.py RUN_OR_PIPELINE [...] [--world out/model11/world]
        [--triples 16] [--steps 1 2 4 10 25] [--schedulers ddim dpm]

Prints one markdown row per (run, scheduler, steps) with the four held-out metrics and each one's
margin over the best trivial answer on the same windows; the row with the best smallest margin
(in units of the goal: 1 dB for the PSNRs, 0.03 for SSIM) is marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GOAL = {"ssim": 0.03, "psnr": 1.0, "person_psnr": 1.0, "moving_psnr": 1.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--world", default="out/model11/world")
    ap.add_argument("--triples", type=int, default=16)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 10, 25])
    ap.add_argument("--schedulers", nargs="+", default=["ddim", "dpm"])
    args = ap.parse_args()
    import torch

    from directanimator.pipeline import DirectAnimatorPipeline
    from directanimator.train.validation import baseline_metrics, build_validation_set, validate

    torch.set_num_threads(1)
    lines = ["| run | scheduler | steps | SSIM | PSNR | person PSNR | moving PSNR | smallest margin / goal |",
             "|---|---|---|---|---|---|---|---|"]
    best = None
    for run in args.runs:
        for kind in args.schedulers:
            pipe = DirectAnimatorPipeline.from_pretrained(ROOT / run, scheduler=kind)
            vs = build_validation_set(ROOT / args.world, pipe.config, pipe.codec, args.triples)
            base = baseline_metrics(vs)
            top = {k: max(b[k] for b in base.values()) for k in GOAL}
            for steps in args.steps:
                m = validate(pipe.transformer, vs, pipe.codec, pipe.text_encoder([""]), steps, sampler=pipe.scheduler)
                worst = min((m[f"val_{k}"] - top[k]) / g for k, g in GOAL.items())
                row = (f"| {run} | {kind} | {steps} | {m['val_ssim']:.3f} | {m['val_psnr']:.2f} | "
                       f"{m['val_person_psnr']:.2f} | {m['val_moving_psnr']:.2f} | {worst:+.2f} |")
                lines.append(row)
                print(row, flush=True)
                if best is None or worst > best[0]:
                    best = (worst, run, kind, steps)
    lines.append("")
    lines.append(f"trivial answers on these windows: " + ", ".join(
        f"{name} {m['ssim']:.3f} / {m['psnr']:.2f} / {m['person_psnr']:.2f} / {m['moving_psnr']:.2f}"
        for name, m in base.items()))
    lines.append(f"best: {best[1]} {best[2]} {best[3]} steps (smallest margin / goal {best[0]:+.2f})")
    print("\n".join(lines[-2:]))


if __name__ == "__main__":
    main()
