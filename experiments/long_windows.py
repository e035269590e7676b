"""Do windows fused in latent space join better than the pixel cross-fade when the model was trained at
the window length? (BENCHMARKS.md, "Window joins").

The embedded model was trained on 9-frame windows (3 latent frames); CogVideoX's are 49 frames (13).
Run at 25 frames without training, fusion was mixed (BENCHMARKS.md, window joins). This fine-tunes the
embedded model at 25-frame windows with the public commands and then measures the joins with
benchmarks/window_seams.py at the real configuration's geometry (overlap 5: one shared latent frame,
as CogVideoX1.5's 49-frame windows every 44 frames) and at windows 4 frames apart (overlap 21).

  .venv/bin/python experiments/long_windows.py [--work out/long] [--steps 2000] [--clips 40]

Steps (each printed before it runs; done steps are skipped, a stopped training run resumes):
  1. directanimator synth       a world of seed 31 (its identity ids start at 3,100,000, so none is a
                                puppet window_seams.py evaluates): 1,600 training clips of 33 frames and
                                400 held-out cross-ID triples
  2. directanimator pseudo      pseudo clips for the cross-ID stage
  3. directanimator preprocess  cue and latent caches at 25-frame windows
  4. the teacher                the embedded transformer, its config's sample_frames set to 25
  5. directanimator train       cross-ID + S2X (experiments/configs/wide_cross_id_25.yaml), the embedded
                                model as starting point and frozen teacher, validated every 500 steps
  6. pipeline folder            from the run's best, with the config's inference settings
  7. benchmarks/window_seams.py overlap 5 and overlap 21, each at the model's sampler (DPM, 2 steps) and
                                at 10 DDIM steps, for the fine-tuned model, for the embedded model run at
                                25 frames, and for the embedded model as shipped (9 frames, overlap 5);
                                each run's output in WORK/seams/NAME.txt
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from demo_model import DA, pipeline_folder, sh  # experiments/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "wide_cross_id_25.yaml"
EMBEDDED = ROOT / "directanimator" / "assets" / "demo_model"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="out/long")
    ap.add_argument("--steps", type=int, default=2000, help="fine-tuning steps")
    ap.add_argument("--clips", type=int, default=40, help="puppet clips per seam measurement")
    ap.add_argument("--frames", type=int, default=65, help="frames per seam clip (65: 3 windows at overlap 5)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    world, run, teacher = work / "world", work / "run", work / "teacher" / "transformer"
    if not (world / "manifest.jsonl").is_file():
        sh([*DA, "synth", "--out", str(world), "--identities", "2000", "--motions", "300", "--clips", "2000",
            "--frames", "33", "--size", "64", "--seed", "31", "--quiet"])
    if not (world / "pseudo" / "manifest.jsonl").is_file():
        sh([*DA, "pseudo", "--dataset", str(world), "--config", str(CONFIG), "--quiet"])
    sh([*DA, "preprocess", "--dataset", str(world), "--config", str(CONFIG), "--quiet"])
    if not (teacher / "config.json").is_file():
        print(f"teacher: {EMBEDDED / 'transformer'} with sample_frames 25 -> {teacher}", flush=True)
        tmp = teacher.with_name("transformer.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(EMBEDDED / "transformer", tmp)
        conf = json.loads((tmp / "config.json").read_text())
        conf["sample_frames"] = 25
        (tmp / "config.json").write_text(json.dumps(conf, indent=2))
        tmp.replace(teacher)
    if not (run / "best").is_dir() or not (run / "summary.json").is_file():
        resume = ["--resume"] if (run / "checkpoints").is_dir() else []
        sh([*DA, "train", "--config", str(CONFIG), "--stage", "cross_id", "--dataset", str(world), "--validation",
            str(world), "--out", str(run), "--teacher", str(teacher), "--max-steps", str(args.steps), "--seed", "0",
            "--quiet", *resume])
    pipeline = work / "pipeline"
    if not (pipeline / "config.yaml").is_file():
        pipeline_folder(run / "best", CONFIG, pipeline)
    seams = work / "seams"
    seams.mkdir(exist_ok=True)
    py = [sys.executable, str(ROOT / "benchmarks" / "window_seams.py")]
    samplers = (("dpm2", []), ("ddim10", ["--steps", "10", "--scheduler", "ddim"]))
    runs = [(f"finetuned_w25_o{o}_{name}", ["--checkpoint", str(pipeline), "--overlap", str(o), *sampler])
            for o in (5, 21) for name, sampler in samplers]
    # the same geometry without the fine-tune (the embedded 9-frame model run at 25 frames), and the
    # embedded model as shipped (9-frame windows, overlap 5): what the fine-tune changes
    runs += [(f"embedded_w25_o{o}_{name}", ["--window", "25", "--overlap", str(o), *sampler])
             for o in (5, 21) for name, sampler in samplers]
    runs += [(f"embedded_w9_o5_{name}", sampler) for name, sampler in samplers]
    for name, extra in runs:
        out = seams / f"{name}.txt"
        if not out.is_file():
            sh([*py, "--clips", str(args.clips), "--frames", str(args.frames), "--fused-steps", "0", *extra], out=out)


if __name__ == "__main__":
    main()
