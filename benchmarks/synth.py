"""Benchmark of the puppet-world renderer. Target: >= 300 frames/s at 128x128.

Renders clips of each motion family on one core (OpenCV threads off) and reports the median
frames/s over --runs runs, at 128x128 and 256x256.

  .venv/bin/python benchmarks/synth.py [--runs 5] [--frames 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2

from directanimator.synth import render_clip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    out = {"frames_per_clip": args.frames, "runs": args.runs, "target_fps_128": 300}
    for size in (128, 256):
        rates = []
        for run in range(args.runs):
            t = time.perf_counter()
            for motion in range(5):
                render_clip(run, motion, run * 5 + motion, args.frames, size)
            rates.append(5 * args.frames / (time.perf_counter() - t))
        out[f"fps_{size}"] = round(statistics.median(rates), 1)
    out["ratio_vs_target_128"] = round(out["fps_128"] / 300, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
