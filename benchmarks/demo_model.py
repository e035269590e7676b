"""Training throughput and CPU hours of the embedded demo model.

1. Throughput: `directanimator train` with the shipped recipe's configs (configs/demo.yaml for the
   same-ID stage, configs/demo_cross_id.yaml for the cross-ID stage with its S2X teacher) on a small
   puppet world, one process with one thread (as the shipped runs trained), --steps steps per run,
   samples/s the median over the steps after the first 5 (log.jsonl), then the median of --runs
   runs; the stages interleaved in each repetition. The ratio is cross-ID (S2X teacher forward
   included) against same-ID, from the same run.
2. CPU hours actually spent on the shipped model and its second seed: read from the training runs
   (summary.json / validation.jsonl of each stage) when `--runs-dir` holds them.

  .venv/bin/python benchmarks/demo_model.py [--runs 3] [--steps 60] [--runs-dir out/model11/runs]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def samples_per_s(run_dir: Path, skip: int = 5) -> float:
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return statistics.median(e["samples_per_s"] for e in log[skip:])


def spent_hours(runs_dir: Path, threads: int = 1, one_thread: dict[str, float] | None = None) -> dict:
    """CPU hours (wall clock x the threads each run used) of every run under runs_dir that finished; with
    `one_thread` (samples/s of each stage at one thread, measured in the same run), also the one-thread
    CPU hours its steps take at that throughput (runs trained with several threads use them unevenly)."""
    out = {}
    import yaml

    for summary in sorted(runs_dir.glob("*/summary.json")):
        s = json.loads(summary.read_text())
        batch = yaml.safe_load((summary.parent / "config.yaml").read_text())["train"]["batch_size"]
        out[summary.parent.name] = {"steps": s["steps"], "wall_hours": round(s["seconds"] / 3600, 3),
                                    "threads": threads, "cpu_hours": round(s["seconds"] * threads / 3600, 3),
                                    "samples_per_s": round(s["steps"] * batch / max(s["seconds"], 1e-9), 1)}
        if one_thread and s.get("stage") in one_thread:
            out[summary.parent.name]["one_thread_cpu_hours"] = round(
                s["steps"] * batch / one_thread[s["stage"]] / 3600, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--runs-dir", default="out/model11/runs")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--cross-config", default="configs/demo_cross_id.yaml")
    ap.add_argument("--run-threads", type=int, default=1, help="threads the runs under --runs-dir trained with")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_demo_model_"))
    data = work / "world"
    da = str(BIN / "directanimator")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def sh(*cmd):
        subprocess.run(list(cmd), check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)

    sh(da, "synth", "--out", str(data), "--identities", "12", "--motions", "10", "--clips", "40", "--frames", "17",
       "--size", "64", "--quiet")
    sh(da, "pseudo", "--dataset", str(data), "--config", args.config, "--quiet")
    sh(da, "preprocess", "--dataset", str(data), "--config", args.config, "--quiet")
    teacher = work / "teacher"
    sh(da, "train", "--config", args.config, "--stage", "same_id", "--dataset", str(data), "--out",
       str(teacher), "--max-steps", "5", "--quiet")
    same, cross = [], []
    for r in range(args.runs):
        a, b = work / f"same_{r}", work / f"cross_{r}"
        sh(da, "train", "--config", args.config, "--stage", "same_id", "--dataset", str(data), "--out", str(a),
           "--max-steps", str(args.steps), "--quiet")
        same.append(samples_per_s(a))
        sh(da, "train", "--config", args.cross_config, "--stage", "cross_id", "--dataset", str(data),
           "--teacher", str(teacher), "--out", str(b), "--max-steps", str(args.steps), "--quiet")
        cross.append(samples_per_s(b))
    result = {"configs": [args.config, args.cross_config], "threads": 1, "batch": 8, "steps_per_run": args.steps,
              "same_id_samples_per_s": round(statistics.median(same), 1),
              "cross_id_s2x_samples_per_s": round(statistics.median(cross), 1),
              "ratio_cross_vs_same": round(statistics.median(cross) / statistics.median(same), 3),
              "runs": {"same_id": [round(x, 1) for x in same], "cross_id": [round(x, 1) for x in cross]}}
    runs_dir = ROOT / args.runs_dir
    if runs_dir.is_dir():
        result["spent"] = spent_hours(runs_dir, args.run_threads,
                                      {"same_id": statistics.median(same), "cross_id": statistics.median(cross)})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
