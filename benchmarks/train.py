"""Training throughput at the tiny config.

1. Samples/s and peak memory of `directanimator train` (same-ID stage, configs/tiny.yaml, batch 4)
   with one process (2 threads) and with two DDP processes (1 thread each, accelerate launch), on
   the same puppet-world cache. Samples/s is the median over the steps after the first 5 of each
   run (log.jsonl), then the median over --runs runs; peak memory is the largest resident set of a
   training process (getrusage of the finished children).
2. The latent cache: an epoch from raw clips (cue extraction + codec, i.e. `preprocess`, then the
   training steps) against an epoch from the cache (training steps alone), and the per-sample data
   time of each.

  .venv/bin/python benchmarks/train.py [--runs 3] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], threads: int) -> tuple[float, float]:
    """(seconds, peak RSS MiB of its largest process) of one command, measured in a fresh wrapper
    process so earlier commands do not count."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    wrapper = ("import resource, subprocess, sys, json, time; t = time.perf_counter(); "
               "subprocess.run(json.loads(sys.argv[1]), check=True, stdout=subprocess.DEVNULL); "
               "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run([sys.executable, "-c", wrapper, json.dumps(cmd)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    dt, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return dt, rss / 1024


def samples_per_s(run_dir: Path, skip: int = 5) -> float:
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return statistics.median(e["samples_per_s"] for e in log[skip:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    from directanimator.config import load_config
    from directanimator.data.dataset import CachedSamples

    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    data = work / "world"
    cfg_path = work / "tiny.yaml"
    cfg_path.write_text((ROOT / "configs/tiny.yaml").read_text() + "train:\n  batch_size: 4\n  checkpoint_every: 100000\n")
    subprocess.run([str(BIN / "directanimator"), "synth", "--out", str(data), "--identities", "8", "--motions", "8",
                    "--clips", "40", "--frames", "17", "--size", "64", "--quiet"], check=True, cwd=ROOT)
    t = time.perf_counter()
    subprocess.run([str(BIN / "directanimator"), "preprocess", "--dataset", str(data), "--config", str(cfg_path),
                    "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    preprocess_s = time.perf_counter() - t
    cfg = load_config(cfg_path)
    ds = CachedSamples(data, cfg, "same_id")
    n = len(ds)
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    cached_read_ms = 1e3 * (time.perf_counter() - t) / n

    train = [str(BIN / "directanimator"), "train", "--config", str(cfg_path), "--dataset", str(data), "--quiet",
             "--max-steps", str(args.steps)]
    ddp = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "directanimator.train", *train[2:]]
    one, two, mem_one, mem_two = [], [], 0.0, 0.0
    for r in range(args.runs):
        out1, out2 = work / f"one_{r}", work / f"two_{r}"
        _, mem_one = run([*train, "--out", str(out1)], threads=2)
        one.append(samples_per_s(out1))
        _, mem_two = run([*ddp, "--out", str(out2)], threads=1)
        two.append(samples_per_s(out2))
    sps_one, sps_two = statistics.median(one), statistics.median(two)
    epoch_train_s = n / sps_one
    result = {
        "dataset": {"train_clips": 32, "frames": 17, "size": 64, "windows": n},
        "samples_per_s": {"1_process_2_threads": round(sps_one, 1), "2_processes_1_thread": round(sps_two, 1),
                          "ratio_2_vs_1": round(sps_two / sps_one, 2), "runs": one + two},
        "peak_rss_mib": {"1_process": round(mem_one), "2_processes_each": round(mem_two)},
        "cache": {"uncached_data_ms_per_sample": round(1e3 * preprocess_s / n, 1),
                  "cached_data_ms_per_sample": round(cached_read_ms, 2),
                  "epoch1_from_raw_s": round(preprocess_s + epoch_train_s, 2),
                  "epoch2_from_cache_s": round(epoch_train_s, 2),
                  "speedup_epoch2_vs_epoch1": round((preprocess_s + epoch_train_s) / epoch_train_s, 1)},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
