"""Held-out metrics of demo-model runs next to the three trivial answers, on puppet worlds whose
identities and motions were never trained on. Writes experiments/reports/demo_model.md.

    .venv/bin/python experiments/demo_model_eval.py --model NAME=RUN_OR_PIPELINE [--model ...]
        [--world out/demo_model/world] [--world out/eval_world12] [--triples 20] [--steps 25]

Each world must hold cross-ID triples (`directanimator synth`); every triple's identities and
motions are its world's held-out ones, and worlds built with another seed than the training world
share no identity or motion with it. The embedded model is `--model embedded=`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAIN = ("ssim", "psnr", "person_psnr", "moving_psnr")


def margins(model: dict, baselines: dict) -> dict:
    """Model minus the best trivial answer, per metric."""
    return {k: model[k] - max(b[k] for b in baselines.values()) for k in MAIN}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (PATH empty: the embedded model)")
    ap.add_argument("--world", action="append", default=None)
    ap.add_argument("--triples", type=int, default=20)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's config)")
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
             "wrong by construction. Margin: the model minus the best trivial answer on that metric.", ""]
    summary = {}
    for world in worlds:
        rows, base = {}, None
        for spec in args.model:
            name, _, path = spec.partition("=")
            pipe = DirectAnimatorPipeline.from_pretrained(path or None)
            t = time.perf_counter()
            res = evaluate_triples(pipe, ROOT / world, limit=args.triples, steps=args.steps, baselines=base is None)
            if base is None:
                base = res["baselines"]
            rows[name] = res["mean"]
            print(f"{world} {name}: {json.dumps({k: round(v, 3) for k, v in res['mean'].items() if v is not None})} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        lines += [f"## {world}", "", *markdown_table(rows, base), "", "| margin over the best trivial answer | SSIM | PSNR | "
                  "person PSNR | moving PSNR |", "|---|---|---|---|---|"]
        for name, m in rows.items():
            d = margins(m, base)
            lines.append(f"| {name} | {d['ssim']:+.3f} | {d['psnr']:+.2f} | {d['person_psnr']:+.2f} | {d['moving_psnr']:+.2f} |")
            summary.setdefault(name, {})[world] = d
        lines.append("")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
