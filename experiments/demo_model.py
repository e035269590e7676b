"""Train the embedded demo model (directanimator/assets/demo_model) from scratch, with the public
commands only, and write its loss curves and held-out metrics.

    .venv/bin/python experiments/demo_model.py [--work out/demo_model] [--same-id-steps 2000]
        [--cross-id-steps 1000] [--install]

Steps (each printed before it runs):
  1. directanimator synth       a puppet world of 64x64, 17-frame clips (held-out identities/motions)
  2. directanimator pseudo      puppet pseudo clips + automated filter
  3. directanimator preprocess  cue and latent caches
  4. directanimator train       same-ID stage
  5. directanimator train       cross-ID stage, S2X loss against the same-ID model
  6. directanimator plot-losses
  7. pipeline folder            (--install copies it to directanimator/assets/demo_model)
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


def sh(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="out/demo_model")
    ap.add_argument("--same-id-steps", type=int, default=2000)
    ap.add_argument("--cross-id-steps", type=int, default=1000)
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--install", action="store_true", help="copy the result into directanimator/assets/demo_model")
    args = ap.parse_args()
    work = (ROOT / args.work).resolve()
    data, same, cross = work / "world", work / "same_id", work / "cross_id"
    cfg = "configs/demo.yaml"
    if not (data / "manifest.jsonl").is_file():
        sh([*DA, "synth", "--out", str(data), "--identities", "40", "--motions", "25", "--clips", str(args.clips),
            "--frames", "17", "--size", "64", "--seed", "7", "--quiet"])
    if not (data / "pseudo" / "manifest.jsonl").is_file():
        sh([*DA, "pseudo", "--dataset", str(data), "--config", cfg, "--quiet"])
    sh([*DA, "preprocess", "--dataset", str(data), "--config", cfg, "--quiet"])
    resume = ["--resume"] if (same / "checkpoints").is_dir() else []
    sh([*DA, "train", "--config", cfg, "--stage", "same_id", "--dataset", str(data), "--out", str(same),
        "--max-steps", str(args.same_id_steps), "--quiet", *resume])
    resume = ["--resume"] if (cross / "checkpoints").is_dir() else []
    sh([*DA, "train", "--config", cfg, "--stage", "cross_id", "--dataset", str(data), "--out", str(cross),
        "--teacher", str(same), "--max-steps", str(args.cross_id_steps), "--quiet", *resume])
    sh([*DA, "plot-losses", str(same), str(cross), "--labels", "stage 1: same-ID", "stage 2: cross-ID + S2X",
        "--smooth", "25", "--out", str(work / "losses.png")])
    from directanimator.pipeline import DirectAnimatorPipeline

    pipe = DirectAnimatorPipeline.from_pretrained(cross)
    final = work / "pipeline"
    if final.exists():
        shutil.rmtree(final)
    pipe.save_pretrained(final)
    print(f"pipeline folder: {final}")
    if args.install:
        dest = ROOT / "directanimator" / "assets" / "demo_model"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(final, dest)
        shutil.copy(work / "losses.png", ROOT / "docs" / "demo_model_losses.png")
        print(f"installed into {dest}")


if __name__ == "__main__":
    main()
