"""Toy-scale reproductions of the paper's Figure 1 (right) and Tables 3-5 on the puppet world.

    .venv/bin/python experiments/ablations.py [--seeds 0 1] [--same-steps 400] [--cross-steps 400]
        [--triples 10] [--only fig1,table5,...] [--work out/experiments]

Every arm trains with the public commands (printed as they run; finished runs are reused), then
animates the world's held-out cross-ID triples (held-out identities and motions) and is scored
against the ground-truth renders (eval/puppet.py). Reports land in experiments/reports/.

Arms (configs/demo.yaml's tiny model; one same-ID teacher per model/cue variant and seed):
  fig1     cross-ID stage (a) from the base model without S2X, (b) from the same-ID checkpoint
           without S2X, (c) from the same-ID checkpoint with S2X (lambda 0.5, D = 1 of 4)
  table5   injection cuefusion / concat / cross_attention
  table4   D = 1, 2, 3 (of 4 blocks; the paper's 10, 20, 30 of 42) and lambda = 0.1, 0.5, 1
  table3   S1 no face cue, S3 RGB pose cue, S4 gray without low-pass, S6 no location cue,
           S7 hard mask only
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DA = str(Path(sys.executable).parent / "directanimator")
REPORTS = ROOT / "experiments" / "reports"

# variant name -> config overrides (nested dict merged into configs/demo.yaml)
VARIANTS = {
    "base": {},
    "concat": {"model": {"injection": "concat"}},
    "cross_attention": {"model": {"injection": "cross_attention"}},
    "no_face": {"model": {"use_face_cue": False}},
    "rgb_pose": {"cues": {"pose": {"mode": "rgb"}}},
    "gray_no_lowpass": {"cues": {"pose": {"mode": "gray"}}},
    "no_location": {"model": {"use_location_cue": False}},
    "hard_mask": {"cues": {"location": {"mode": "hard"}}},
}
# cross-ID arm name -> (variant, train overrides)
CROSS = {
    "a_base_no_s2x": ("base", {"init": "base", "s2x": {"weight": 0.0}}),
    "b_same_id_no_s2x": ("base", {"s2x": {"weight": 0.0}}),
    "c_same2x": ("base", {}),
    "d2": ("base", {"s2x": {"depth": 2}}),
    "d3": ("base", {"s2x": {"depth": 3}}),
    "lambda_0.1": ("base", {"s2x": {"weight": 0.1}}),
    "lambda_1": ("base", {"s2x": {"weight": 1.0}}),
    **{v: (v, {}) for v in VARIANTS if v != "base"},
}
GROUPS = {
    "fig1": ["a_base_no_s2x", "b_same_id_no_s2x", "c_same2x"],
    "table5": ["c_same2x", "concat", "cross_attention"],
    "table4": ["c_same2x", "d2", "d3", "lambda_0.1", "lambda_1"],
    "table3": ["c_same2x", "no_face", "rgb_pose", "gray_no_lowpass", "no_location", "hard_mask"],
}


def sh(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def write_config(path: Path, overrides: dict, seed: int, args) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg = merge(cfg, overrides)
    cfg = merge(cfg, {"train": {"seed": seed, "batch_size": args.batch, "checkpoint_every": 100000, "keep_last": 1,
                                "warmup_steps": 50}, "inference": {"steps": args.sample_steps}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def done(run: Path, steps: int) -> bool:
    summary = run / "summary.json"
    return summary.is_file() and json.loads(summary.read_text())["steps"] >= steps


def ensure_world(work: Path, world: str | None) -> Path:
    """The demo model's puppet world when given (it is the same synth command), else a new one."""
    if world:
        return (ROOT / world).resolve()
    world = work / "world"
    if not (world / "manifest.jsonl").is_file():
        sh([DA, "synth", "--out", world, "--identities", "40", "--motions", "25", "--clips", "250", "--frames", "17",
            "--size", "64", "--seed", "7", "--quiet"])
    return world


def run_arm(work: Path, world: Path, arm: str, seed: int, args) -> Path:
    variant, train_over = CROSS[arm]
    vdir = work / f"seed{seed}" / variant
    vcfg = write_config(vdir / "config.yaml", VARIANTS[variant], seed, args)
    if not (world / "pseudo" / "manifest.jsonl").is_file():
        sh([DA, "pseudo", "--dataset", world, "--config", vcfg, "--quiet"])
    sh([DA, "preprocess", "--dataset", world, "--config", vcfg, "--quiet"])  # no-op when cached
    teacher = vdir / "same_id"
    if not done(teacher, args.same_steps):
        sh([DA, "train", "--config", vcfg, "--stage", "same_id", "--dataset", world, "--out", teacher,
            "--max-steps", args.same_steps, "--quiet", *(["--resume"] if (teacher / "checkpoints").is_dir() else [])])
    arm_dir = work / f"seed{seed}" / f"cross_{arm}"
    acfg = write_config(arm_dir / "config.yaml", merge(VARIANTS[variant], {"train": train_over}), seed, args)
    run = arm_dir / "run"
    if not done(run, args.cross_steps):
        sh([DA, "train", "--config", acfg, "--stage", "cross_id", "--dataset", world, "--out", run, "--teacher",
            teacher, "--max-steps", args.cross_steps, "--quiet",
            *(["--resume"] if (run / "checkpoints").is_dir() else [])])
    return run


def evaluate(run: Path, world: Path, args) -> dict:
    cached = run / "eval.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    from directanimator.eval.puppet import evaluate_triples
    from directanimator.pipeline import DirectAnimatorPipeline

    print(f"# evaluate {run} on {args.triples} held-out triples", flush=True)
    result = evaluate_triples(DirectAnimatorPipeline.from_pretrained(run), world, limit=args.triples,
                              steps=args.sample_steps)
    cached.write_text(json.dumps(result, indent=1))
    return result


def read_loss(run: Path) -> tuple[np.ndarray, np.ndarray]:
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    return np.array([e["step"] for e in log]), np.array([e["loss_denoise"] for e in log])


def ema(values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    out, acc = [], values[0]
    for v in values:
        acc = (1 - alpha) * acc + alpha * v
        out.append(acc)
    return np.array(out)


def fmt(values: list[float], digits: int) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def table(rows: dict[str, list[dict]], labels: dict[str, str]) -> str:
    lines = ["| arm | SSIM ↑ | PSNR ↑ | L1 (E-02) ↓ | face PSNR ↑ | final cross-ID loss ↓ |", "|---|---|---|---|---|---|"]
    for arm, results in rows.items():
        lines.append(f"| {labels.get(arm, arm)} | {fmt([r['mean']['ssim'] for r in results], 3)} | "
                     f"{fmt([r['mean']['psnr'] for r in results], 2)} | "
                     f"{fmt([100 * r['mean']['l1'] for r in results], 2)} | "
                     f"{fmt([r['mean']['face_psnr'] for r in results], 2)} | "
                     f"{fmt([r['final_loss'] for r in results], 4)} |")
    return "\n".join(lines)


LABELS = {
    "a_base_no_s2x": "(a) cross-ID from the base model, no S2X", "b_same_id_no_s2x": "(b) from same-ID, no S2X",
    "c_same2x": "(c) from same-ID + S2X (full: cuefusion, D=1, λ=0.5)", "concat": "DC injection (concat)",
    "cross_attention": "CA injection (cross-attention)", "d2": "D = 2 of 4", "d3": "D = 3 of 4",
    "lambda_0.1": "λ = 0.1", "lambda_1": "λ = 1", "no_face": "S1 w/o face cue", "rgb_pose": "S3 RGB pose cue",
    "gray_no_lowpass": "S4 gray, no low-pass", "no_location": "S6 w/o location cue", "hard_mask": "S7 hard mask only",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--same-steps", type=int, default=400)
    ap.add_argument("--cross-steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--triples", type=int, default=10)
    ap.add_argument("--only", default="fig1,table5,table4,table3")
    ap.add_argument("--work", default="out/experiments")
    ap.add_argument("--world", default=None, help="an existing puppet world (e.g. out/demo_model/world)")
    args = ap.parse_args()
    work = (ROOT / args.work).resolve()
    world = ensure_world(work, args.world)
    groups = [g for g in args.only.split(",") if g]
    arms = list(dict.fromkeys(a for g in groups for a in GROUPS[g]))
    results: dict[str, list[dict]] = {a: [] for a in arms}
    runs: dict[str, list[Path]] = {a: [] for a in arms}
    for seed in args.seeds:
        for arm in arms:
            run = run_arm(work, world, arm, seed, args)
            res = evaluate(run, world, args)
            steps, loss = read_loss(run)
            res["final_loss"] = float(ema(loss)[-1])
            results[arm].append(res)
            runs[arm].append(run)
    REPORTS.mkdir(parents=True, exist_ok=True)
    command = "python experiments/ablations.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
        if k not in ("work", "world"))
    (REPORTS / "results.json").write_text(json.dumps(
        {"command": command, "seeds": args.seeds,
         "arms": {a: [{"mean": r["mean"], "final_loss": r["final_loss"]} for r in rs] for a, rs in results.items()}},
        indent=1))
    if "fig1" in groups:
        figure1(runs, results, args, command)
    for g in ("table5", "table4", "table3"):
        if g in groups:
            (REPORTS / f"{g}.md").write_text(f"# {g} at toy scale\n\nCommand: `{command}`\n\n"
                                             + table({a: results[a] for a in GROUPS[g]}, LABELS) + "\n")
    print(f"reports in {REPORTS}")


def figure1(runs, results, args, command) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    speed = []
    for arm, color in zip(GROUPS["fig1"], ("tab:red", "tab:orange", "tab:blue")):
        for i, run in enumerate(runs[arm]):
            s, l = read_loss(run)
            ax.plot(s, ema(l), color=color, alpha=0.9 if i == 0 else 0.5, label=LABELS[arm] if i == 0 else None)
    for i in range(len(args.seeds)):
        for slow, fast in (("a_base_no_s2x", "c_same2x"), ("b_same_id_no_s2x", "c_same2x")):
            ss, ls = read_loss(runs[slow][i])
            sf, lf = read_loss(runs[fast][i])
            level = ema(ls)[-1]  # the level the slower arm reaches at its last step
            reach = next((int(s) for s, v in zip(sf, ema(lf)) if v <= level), None)
            speed.append({"seed": args.seeds[i], "slow": slow, "fast": fast, "level": float(level),
                          "steps_slow": int(ss[-1]), "steps_fast": reach,
                          "speedup": (ss[-1] / reach) if reach else None, "already_below_at_start": reach == int(sf[0])})
    ax.set(xlabel="cross-ID step", ylabel="denoising loss (EMA 0.05)", yscale="log",
           title="Cross-ID stage, toy scale (Figure 1 right)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(REPORTS / "fig1_cross_id_loss.png", dpi=110)
    plt.close(fig)
    lines = [f"# Figure 1 (right) at toy scale\n\nCommand: `{command}`\n",
             "![cross-ID loss curves](fig1_cross_id_loss.png)\n",
             "Speed-up: the steps the slower arm needs to reach its final loss level (EMA 0.05 of the "
             "denoising loss), divided by the steps the faster arm needs to reach the same level (the paper "
             "reports 6.7x for training with Same2X against without). When the faster arm is below that level "
             "from its first step, the ratio only says that its starting point is already there.\n",
             "| seed | slower arm | faster arm | level | steps (slower) | steps (faster) | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for s in speed:
        if s["steps_fast"] is None:
            sp = "not reached"
        elif s["already_below_at_start"]:
            sp = f"≥ {s['speedup']:.0f}x (below the level at its first step)"
        else:
            sp = f"{s['speedup']:.1f}x"
        lines.append(f"| {s['seed']} | {s['slow']} | {s['fast']} | {s['level']:.4f} | {s['steps_slow']} | "
                     f"{s['steps_fast']} | {sp} |")
    lines += ["", table({a: results[a] for a in GROUPS["fig1"]}, LABELS)]
    (REPORTS / "fig1.md").write_text("\n".join(lines) + "\n")
    (REPORTS / "fig1_speedup.json").write_text(json.dumps(speed, indent=1))


if __name__ == "__main__":
    main()
