"""Train the embedded demo model (directanimator/assets/demo_model) from scratch with the public
commands only, choosing checkpoints by a held-out validation metric, and write its loss curves.

    .venv/bin/python experiments/demo_model.py [--work out/model11] [--seed 0] [--same-id-steps N]
        [--cross-id-steps N] [--install]

Steps (each printed before it runs; every step resumes or skips what is already done, so the
script can be stopped and run again):
  1. directanimator synth       a training world of 6,000 clips (4,800 training clips of 4,800 of its
                                identities and 400 of its motions; its 1,200 cross-ID triples use
                                held-out identities and motions and serve as the validation set)
  2. directanimator pseudo      puppet pseudo clips for the cross-ID stage, calibrated filter
  3. directanimator preprocess  cue and latent caches
  4. directanimator train       same-ID stage (configs/demo.yaml), validated every 500 steps on 16
                                held-out cross-ID triples
  5. directanimator train       cross-ID stage with S2X (configs/demo_cross_id.yaml): the student
                                starts from the same-ID model's last checkpoint, which is also the
                                frozen teacher; the best by held-out moving-region PSNR is kept
  6. directanimator plot-losses
  7. pipeline folder            from the cross-ID run's best (--install copies it into the package)

The embedded model is the 4 x 256 variant: `--work out/wide --config
experiments/configs/wide.yaml --cross-config experiments/configs/wide_cross_id.yaml --cross-id-steps 12000`
(a model over 20 MB in float32 is stored in float16).

The world is built with seed 11; evaluation (experiments/demo_model_eval.py) uses worlds of other
seeds (7, the demo's, and 12), so no evaluated identity or motion was ever trained on.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DA = [str(Path(sys.executable).parent / "directanimator")]
CONFIG = "configs/demo.yaml"             # the model, the data, stage 1's training settings
CROSS_CONFIG = "configs/demo_cross_id.yaml"  # the same model and data, stage 2's training settings


def sh(args: list[str], out: Path | None = None) -> None:
    """Run a command from the repository root, printed first; with `out`, its standard output goes to
    that file (written under a temporary name, then renamed) and is printed."""
    print("$ " + " ".join(shlex.quote(a) for a in args) + (f" > {out}" if out else ""), flush=True)
    if out is None:
        subprocess.run(args, check=True, cwd=ROOT)
        return
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "w") as f:
        subprocess.run(args, check=True, cwd=ROOT, stdout=f)
    tmp.replace(out)
    print(out.read_text(), flush=True)


def pipeline_folder(best: Path, config: str | Path, final: Path) -> None:
    """A pipeline folder at `final` from a training run's `best` checkpoint, with the inference settings
    of `config` (the shipped scheduler and steps were chosen on the validation triples with
    experiments/sampler_sweep.py, not those the run started with); written under a temporary name."""
    from dataclasses import replace

    from directanimator.config import load_config
    from directanimator.pipeline import DirectAnimatorPipeline

    inference = load_config(config).inference
    pipe = DirectAnimatorPipeline.from_pretrained(best, scheduler=inference.scheduler)
    pipe.config = replace(pipe.config, inference=inference)
    params = sum(p.numel() for p in pipe.transformer.parameters())
    if params * 4 > 20e6:  # the shipped model stays under 20 MB: stored in float16, run in float32
        import torch

        pipe.transformer.to(torch.float16)
        print(f"{params:,} parameters: stored in float16 ({params * 2 / 1e6:.1f} MB)")
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.replace(final)
    print(f"pipeline folder: {final}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="out/model11")
    ap.add_argument("--seed", type=int, default=0, help="training seed (the world stays the same)")
    ap.add_argument("--same-id-steps", type=int, default=2500)
    ap.add_argument("--cross-id-steps", type=int, default=18000)
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--cross-config", default=CROSS_CONFIG)
    ap.add_argument("--install", action="store_true", help="copy the result into directanimator/assets/demo_model")
    args = ap.parse_args()
    work = (ROOT / args.work).resolve()
    world = work / "world"
    same, cross = work / "runs" / f"same_id_seed{args.seed}", work / "runs" / f"cross_id_seed{args.seed}"
    if not (world / "manifest.jsonl").is_file():
        sh([*DA, "synth", "--out", str(world), "--identities", "6000", "--motions", "500", "--clips", "6000",
            "--frames", "17", "--size", "64", "--seed", "11", "--quiet"])
    if not (world / "pseudo" / "manifest.jsonl").is_file():
        sh([*DA, "pseudo", "--dataset", str(world), "--config", args.config, "--quiet"])
    sh([*DA, "preprocess", "--dataset", str(world), "--config", args.config, "--quiet"])
    seed = ["--seed", str(args.seed)]
    resume = ["--resume"] if (same / "checkpoints").is_dir() else []
    sh([*DA, "train", "--config", args.config, "--stage", "same_id", "--dataset", str(world), "--validation",
        str(world), "--out", str(same), "--max-steps", str(args.same_id_steps), *seed, "--quiet", *resume])
    resume = ["--resume"] if (cross / "checkpoints").is_dir() else []
    sh([*DA, "train", "--config", args.cross_config, "--stage", "cross_id", "--dataset", str(world), "--validation",
        str(world), "--out", str(cross), "--teacher", str(same), "--max-steps", str(args.cross_id_steps),
        *seed, "--quiet", *resume])
    sh([*DA, "plot-losses", str(same), str(cross), "--labels", "stage 1: same-ID", "stage 2: cross-ID + S2X",
        "--smooth", "50", "--out", str(work / f"losses_seed{args.seed}.png")])
    final = work / f"pipeline_seed{args.seed}"
    pipeline_folder(cross / "best", ROOT / args.cross_config, final)
    if args.install:
        dest = ROOT / "directanimator" / "assets" / "demo_model"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(final, dest)
        shutil.copy(work / f"losses_seed{args.seed}.png", ROOT / "docs" / "demo_model_losses.png")
        print(f"installed into {dest}")


if __name__ == "__main__":
    main()
