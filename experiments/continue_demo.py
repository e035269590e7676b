"""Continue the embedded demo model's training from its committed weights; install it, and commit it,
only if it beats the shipped model on the held-out validation.

    .venv/bin/python experiments/continue_demo.py [--world out/model11/world] [--work out/continue]
        [--steps 6000] [--lr 2e-4] [--warmup 100] [--person-loss-weight 0] [--sampler-timesteps 0]
        [--install] [--commit]

The repository is the only lasting state, so the shipped model is the lasting state of its training;
checkpoints outside git are a bonus (a stopped run resumes from its own), never relied on.
  1. the world and caches as experiments/demo_model.py builds them (seed 11, the shipped config; the
     claims study's out/claims/world is the same world)
  2. directanimator train, cross-ID stage, from the shipped weights (`train.init_from: embedded`) with a
     new optimizer and warm-up and the denoising loss alone (its same-ID teacher is not shipped),
     validated on 16 held-out cross-ID triples every 500 steps; the row at step 0 is the shipped model
  3. `decide`: the best row by held-out moving-region PSNR (the recipe's selection metric) must beat
     step 0 on it by at least MARGIN dB and lose no person PSNR
  4. --install: a run that beats it becomes directanimator/assets/demo_model (float16 storage); with
     --install or --commit BENCHMARKS.md's table of continued runs gets the run's row, installed or not
     (the CPU hours of every run are kept); --commit commits the row and the model (one commit a run)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DA = [str(Path(sys.executable).parent / "directanimator")]
MARGIN = 0.05  # dB of held-out moving-region PSNR
TABLE = "### Continued from the committed model (`experiments/continue_demo.py`)"


def decide(rows: list[dict], margin: float = MARGIN) -> dict:
    """From a run's validation rows (step 0 = the start): {'beats', 'start', 'best'}."""
    scored = [r for r in rows if "val_moving_psnr" in r]
    start = next((r for r in scored if r["step"] == 0), None)
    if start is None:
        raise SystemExit("error: the run has no validation row at step 0 (train.init_from with validation)")
    best = max(scored, key=lambda r: r["val_moving_psnr"])
    beats = (best["step"] > 0 and best["val_moving_psnr"] >= start["val_moving_psnr"] + margin
             and best["val_person_psnr"] >= start["val_person_psnr"])
    return {"beats": bool(beats), "start": start, "best": best}


def recipe(args) -> str:
    """What a continued run changes from the plain denoising loss ("" for none), for its row."""
    return ", ".join([f"person loss weight {args.person_loss_weight:g}"] * bool(args.person_loss_weight)
                     + [f"sampler timesteps {args.sampler_timesteps:g}"] * bool(args.sampler_timesteps))


def benchmark_row(steps: int, cpu_hours: float, verdict: dict, installed: bool, what: str = "") -> str:
    s, b = verdict["start"], verdict["best"]
    return (f"| {steps:,}{f' ({what})' if what else ''} | {cpu_hours:.2f} | {s['val_moving_psnr']:.2f} -> {b['val_moving_psnr']:.2f} (step {b['step']:,}) "
            f"| {s['val_person_psnr']:.2f} -> {b['val_person_psnr']:.2f} | {'yes' if installed else 'no'} |")


def add_benchmark_row(text: str, row: str) -> str:
    """BENCHMARKS.md with `row` appended to the table of continued runs (the table made if missing)."""
    if TABLE not in text:
        text = text.rstrip("\n") + "\n\n" + TABLE + "\n\n" + (
            "Each run starts from the committed weights; it is installed only when its best held-out moving-region "
            "PSNR beats the start's (the row at step 0) by 0.05 dB and it loses no person PSNR.\n\n"
            "| steps | one-thread CPU hours | held-out moving PSNR, start -> best | person PSNR | installed |\n"
            "|---|---|---|---|---|\n")
    head, _, tail = text.partition(TABLE)
    lines = tail.split("\n")
    last = max(i for i, ln in enumerate(lines) if ln.startswith("|"))
    lines.insert(last + 1, row)
    return head + TABLE + "\n".join(lines)


def run_config(work: Path, world: Path, args) -> Path:
    """The shipped model's config, set to continue from its weights (cross-ID, no teacher)."""
    from directanimator.pipeline.checkpoints import EMBEDDED

    cfg = yaml.safe_load((EMBEDDED / "config.yaml").read_text())
    t = cfg["train"]
    t.update(stage="cross_id", init_from="embedded", teacher=None, lr=args.lr, warmup_steps=args.warmup,
             lr_schedule="cosine", checkpoint_every=500, keep_last=1, person_loss_weight=args.person_loss_weight,
             sampler_timesteps=args.sampler_timesteps)
    t["s2x"]["weight"] = 0.0
    t["validation"].update(dataset=str(world), triples=16, every=500)
    cfg["data"]["dataset"] = str(world)
    path = work / "continue.yaml"
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="out/model11/world")
    ap.add_argument("--work", default="out/continue")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--person-loss-weight", type=float, default=0.0,
                    help="train.person_loss_weight of the continued run (experiments/reports/fit_probe.md)")
    ap.add_argument("--sampler-timesteps", type=float, default=0.0,
                    help="train.sampler_timesteps of the continued run: the share of samples at the shipped "
                         "sampler's noise levels")
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--commit", action="store_true", help="with --install: commit the model and BENCHMARKS.md")
    args = ap.parse_args()
    from demo_model import pipeline_folder, sh

    work, world = (ROOT / args.work).resolve(), (ROOT / args.world).resolve()
    config, run = run_config(work, world, args), work / "run"
    sh([*DA, "preprocess", "--dataset", str(world), "--config", str(config), "--quiet"])
    resume = ["--resume"] if (run / "checkpoints").is_dir() else []
    sh([*DA, "train", "--config", str(config), "--stage", "cross_id", "--dataset", str(world), "--out", str(run),
        "--max-steps", str(args.steps), "--quiet", *resume])
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(x) for x in (run / "validation.jsonl").read_text().splitlines() if x.strip()]
    verdict = decide(rows)
    hours = summary["cpu_seconds"] / 3600
    print(json.dumps({"beats": verdict["beats"], "start": verdict["start"], "best": verdict["best"],
                      "cpu_hours": round(hours, 3)}, indent=1))
    install = args.install and verdict["beats"]
    if install:
        dest = ROOT / "directanimator" / "assets" / "demo_model"
        pipeline_folder(run / "best", dest / "config.yaml", work / "pipeline")  # the shipped inference settings
        shutil.rmtree(dest)
        (work / "pipeline").replace(dest)
    if args.install or args.commit:  # every run's CPU hours are kept, installed or not
        bench = ROOT / "BENCHMARKS.md"
        bench.write_text(add_benchmark_row(bench.read_text(), benchmark_row(args.steps, hours, verdict, install,
                                                                         recipe(args))))
    if args.commit:
        paths = ["BENCHMARKS.md"] + (["directanimator/assets/demo_model"] if install else [])
        subprocess.run(["git", "add", *paths], check=True, cwd=ROOT)
        what = "installed" if install else "not installed: it did not beat the committed model"
        subprocess.run(["git", "commit", "-q", "-m", f"Demo model continued {args.steps:,} steps"
                        f"{f' ({recipe(args)})' if recipe(args) else ''} from the committed "
                        f"weights ({what}; held-out moving PSNR {verdict['start']['val_moving_psnr']:.2f} -> "
                        f"{verdict['best']['val_moving_psnr']:.2f})", "--", *paths], check=True, cwd=ROOT)

if __name__ == "__main__":
    main()
