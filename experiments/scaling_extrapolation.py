"""How much more training would reach a target, extrapolated from held-out validation curves (the
runs' validation.jsonl, train/validation.py): each metric fitted as a + b ln(step) by least squares over
the second half of the run (where the early rise is over), and the step (and CPU time at the run's own
seconds per step) at which the fit reaches the target, the still photo's value on the same triples
plus the goal's margin (+0.03 SSIM, +1 dB PSNR). A log-linear fit of a flattening curve is
optimistic about what more steps give: read its answer as a lower bound on the compute needed.

  .venv/bin/python experiments/scaling_extrapolation.py RUN [RUN ...] [--labels ...] [--threads N ...]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

GOAL = {"val_ssim": 0.03, "val_psnr": 1.0, "val_person_psnr": 1.0, "val_moving_psnr": 1.0}
TRIVIAL = {"val_ssim": "ssim", "val_psnr": "psnr", "val_person_psnr": "person_psnr", "val_moving_psnr": "moving_psnr"}


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="threads each run used (CPU = wall x threads)")
    args = ap.parse_args()
    labels = args.labels or [Path(r).name for r in args.runs]
    threads = args.threads or [1] * len(args.runs)
    print("| run | metric | last value | target (still photo + goal) | slope per e-fold of steps | steps to target "
          "(fit) | CPU hours to target (fit) |")
    print("|---|---|---|---|---|---|---|")
    for run, label, th in zip(args.runs, labels, threads):
        lines = [json.loads(x) for x in (Path(run) / "validation.jsonl").read_text().splitlines() if x.strip()]
        trivial = next(x for x in lines if "trivial_answers" in x)["trivial_answers"]
        rows = [x for x in lines if "val_loss" in x]
        last = rows[-1]
        sec_per_step = last["train_seconds"] / last["step"] * th / 3600.0  # CPU hours per step
        half = rows[len(rows) // 2:]
        for key in GOAL:
            best_trivial = max(t[TRIVIAL[key]] for t in trivial.values())
            target = best_trivial + GOAL[key]
            a, b = fit([math.log(r["step"]) for r in half], [r[key] for r in half])
            if b <= 0:
                steps, hours = "never (flat or falling)", "-"
            else:
                ln_steps = (target - a) / b
                steps = f"{math.exp(ln_steps):.3g}" if ln_steps < 700 else "> 1e300"
                hours = f"{math.exp(ln_steps) * sec_per_step:.3g}" if ln_steps < 700 else "-"
            print(f"| {label} | {key[4:]} | {last[key]:.3f} | {target:.3f} | {b:+.4f} | {steps} | {hours} |")


if __name__ == "__main__":
    main()
