"""Held-out metrics of demo-model runs next to the three trivial answers, on puppet worlds whose
identities and motions were never trained on. Writes experiments/reports/demo_model.md.

  .venv/bin/python experiments/demo_model_eval.py --model NAME=RUN_OR_PIPELINE [--model ...]
        [--world out/demo_model/world] [--world out/eval_world12] [--triples 20] [--steps 25]
        [--sampler dpm:2 --sampler ddim:1] [--keep-background off --keep-background 0.05]

Each world must hold cross-ID triples (`directanimator synth`); every triple's identities and
motions are its world's held-out ones, and worlds built with another seed than the training world
share no identity or motion with it. The embedded model is `--model embedded=`.

`--sampler SCHEDULER:STEPS` and `--keep-background off|MARGIN` (repeatable) evaluate each model under
every combination (default: the model's own settings); a row's name then carries them. Every row
gets its margin over the best trivial answer per metric and its goal slack: the smallest margin /
goal over the four metrics (the goal: +0.03 SSIM, +1 dB on each PSNR; >= 1 meets it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAIN = ("ssim", "psnr", "person_psnr", "moving_psnr")
GOAL = {"ssim": 0.03, "psnr": 1.0, "person_psnr": 1.0, "moving_psnr": 1.0}


def margins(model: dict, baselines: dict) -> dict:
    """Model minus the best trivial answer, per metric."""
    return {k: model[k] - max(b[k] for b in baselines.values()) for k in MAIN}


def goal_slack(model: dict, baselines: dict) -> float:
    """min over metrics of (margin over the best trivial answer) / goal: >= 1 means the goal is met."""
    d = margins(model, baselines)
    return min(d[k] / GOAL[k] for k in MAIN)


def settings(pipe, sampler: str, keep: str):
    """The pipeline's config with a sampler ("" = its own) and background setting ("" = its own)."""
    inf = pipe.config.inference
    if keep == "off":
        inf = replace(inf, keep_background=False)
    elif keep:
        inf = replace(inf, keep_background=True, keep_background_margin=float(keep))
    steps = int(sampler.partition(":")[2]) if sampler else None
    return replace(pipe.config, inference=inf), steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (PATH empty: the embedded model)")
    ap.add_argument("--world", action="append", default=None)
    ap.add_argument("--triples", type=int, default=20)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's config)")
    ap.add_argument("--sampler", action="append", default=None, help="SCHEDULER:STEPS (default: the model's)")
    ap.add_argument("--keep-background", action="append", default=None, help="off, or a margin (fraction of the frame)")
    ap.add_argument("--out", default="experiments/reports/demo_model.md")
    args = ap.parse_args()
    from directanimator.eval.puppet import evaluate_triples, markdown_table
    from directanimator.pipeline import DirectAnimatorPipeline

    worlds = args.world or ["out/demo_model/world"]
    lines = ["# Demo models on held-out puppets, next to the trivial answers", "",
             "`python experiments/demo_model_eval.py " + " ".join(sys.argv[1:]) + "`", "",
             f"The first {args.triples} cross-ID triples of each world (identities and motions held out of its training "
             "split, and the training world was built with another seed, so none was ever trained on); cues from the "
             "worlds' ground-truth masks and face boxes; seed 0. Person PSNR: over the true person's pixels; moving "
             "PSNR: over the true person's and the reference person's pixels (dilated 2 px), where a still photo is "
             "wrong by construction. Margin: the model minus the best trivial answer on that metric; goal slack: the "
             "smallest margin / goal (+0.03 SSIM, +1 dB each PSNR), >= 1 meets the goal.", ""]
    summary = {}
    for world in worlds:
        rows, base = {}, None
        for spec in args.model:
            name, _, path = spec.partition("=")
            for sampler in args.sampler or [""]:
                pipe = DirectAnimatorPipeline.from_pretrained(path or None, scheduler=sampler.partition(":")[0] or None)
                for keep in args.keep_background or [""]:
                    pipe.config, steps = settings(pipe, sampler, keep)
                    label = " ".join([name] + ([sampler] if sampler else []) + ([f"background {keep}"] if keep else []))
                    t = time.perf_counter()
                    res = evaluate_triples(pipe, ROOT / world, limit=args.triples, steps=steps or args.steps,
                                           baselines=base is None)
                    base = base or res["baselines"]
                    rows[label] = res["mean"]
                    print(f"{world} {label}: {json.dumps({k: round(v, 3) for k, v in res['mean'].items() if v is not None})} "
                          f"({time.perf_counter() - t:.0f} s)", flush=True)
        lines += [f"## {world}", "", *markdown_table(rows, base), "", "| margin over the best trivial answer | SSIM | PSNR | "
                  "person PSNR | moving PSNR | goal slack |", "|---|---|---|---|---|---|"]
        for name, m in rows.items():
            d = margins(m, base)
            lines.append(f"| {name} | {d['ssim']:+.3f} | {d['psnr']:+.2f} | {d['person_psnr']:+.2f} | {d['moving_psnr']:+.2f} "
                         f"| {goal_slack(m, base):+.2f} |")
            summary.setdefault(name, {})[world] = d
        lines.append("")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
