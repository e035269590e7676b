"""Which latent space for the toy models: the hand-made DCT codec or a learned CogVideoX VAE (trained by
experiments/train_vae.py)? Their round trips of held-out truths, and the demo recipe trained on each
at equal steps, scored on held-out cross-ID triples next to the trivial answers. Writes
experiments/reports/latent_space.md and .json.

    .venv/bin/python experiments/latent_space.py --vae out/vae [--clips 256] [--seed 0 --seed 1]
        [--steps 3000] [--eval-world out/claims/eval_world] [--work out/fit_probe]

Each arm is experiments/fit_probe.py's (configs/demo.yaml, 4 x 128, patch 2; its puppet world of N
training clips, seed 31; the same-ID stage for --steps steps on one thread), with model.codec the DCT
codec or the VAE. Both codecs put a 64 px, 9-frame window on the same 16 x 16 x 3 latent grid, and
preprocessing caches every window's latents, so a training step costs about the same CPU on either
and equal steps are equal training CPU (measured and reported). The DCT arms share fit_probe's work
folders (`clipsN`, `clipsN_seedS`), so arms it trained are reused, not retrained.

Scores (mean over the first 20 cross-ID triples of --eval-world, identities and motions never
trained on): the three trivial answers, each codec's round trip of the truth (the most a model on
it can reach), the coarse oracle (every 4x4 colour average right, from the DCT codec), the embedded
demo model, and each arm; and each arm's fit of its own first 16 training clips.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from fit_probe import HELD_OUT, fit_scores, held_out_scores, means, table, train_arm

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("DCT codec", "learned VAE")


def arm_folder(clips: int, seed: int, learned: bool) -> str:
    """fit_probe's folder name for a DCT arm; `_vae` added for the learned codec."""
    return f"clips{clips}" + ("_vae" if learned else "") + (f"_seed{seed}" if seed else "")


def shown(path: Path) -> str:
    """`path` relative to the repository when inside it (as the committed report shows it)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def encode_cpu_ms(codec, frames: int = 9, size: int = 64, runs: int = 5) -> float:
    """Median one-thread CPU milliseconds to encode one window (what preprocessing pays per target
    video, pose cue and face cue window)."""
    import torch

    x = torch.rand(1, frames, 3, size, size) * 2 - 1
    times = []
    for _ in range(runs):
        t = time.process_time()
        codec.encode(x, torch.Generator().manual_seed(0))
        times.append(time.process_time() - t)
    return 1000 * float(np.median(times))


def vae_record(vae: Path) -> dict:
    """What experiments/train_vae.py recorded for the VAE: its steps, CPU seconds and command."""
    record = vae / "train.json"
    if not (vae / "vae" / "config.json").is_file() or not record.is_file():
        raise SystemExit(f"error: {vae} holds no trained VAE (vae/config.json and train.json); "
                         "train one with experiments/train_vae.py")
    r = json.loads(record.read_text())
    return {"steps": r["steps"], "cpu_seconds": r["cpu_seconds"], "commands": r["commands"],
            "final_mse": r["log"][-1]["mse"] if r["log"] else None}


def findings(held: dict, fits: dict, arms: list[dict]) -> list[str]:
    """The two round trips against each other, then each codec's arms held out and on their own clips."""
    rt = {label: held[f"{label} round trip of the truth"] for label in LABELS}
    coarse = held["coarse oracle (every 4x4 colour average right)"]
    lines = ["## What it shows", "",
             f"- Round trip of the held-out truths: the VAE person PSNR {rt[LABELS[1]]['person_psnr']:.2f}, "
             f"motion IoU {rt[LABELS[1]]['motion_iou']:.3f}; the DCT codec {rt[LABELS[0]]['person_psnr']:.2f}, "
             f"{rt[LABELS[0]]['motion_iou']:.3f} (the coarse oracle {coarse['person_psnr']:.2f}, "
             f"{coarse['motion_iou']:.3f})."]
    for label in LABELS:
        mine = [a for a in arms if a["codec"] == label]
        if not mine:
            continue
        iou = [held[a["name"]]["motion_iou"] for a in mine]
        person = [held[a["name"]]["person_psnr"] for a in mine]
        fit_iou = [fits[a["name"]][a["name"]]["motion_iou"] for a in mine]
        lines.append(f"- The demo recipe on the {label} ({len(mine)} seed(s), "
                     f"{np.mean([a['train_cpu_seconds'] for a in mine]) / 60:.1f} CPU min each): held out motion IoU "
                     f"{', '.join(f'{x:.3f}' for x in iou)}, person PSNR {', '.join(f'{x:.2f}' for x in person)}; "
                     f"on its own training clips motion IoU {', '.join(f'{x:.3f}' for x in fit_iou)}.")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", required=True, help="experiments/train_vae.py's --out folder")
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--seed", type=int, action="append", help="training seed (repeatable; default 0)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-world", default="out/claims/eval_world")
    ap.add_argument("--work", default="out/fit_probe")
    ap.add_argument("--out", default="experiments/reports/latent_space.md")
    args = ap.parse_args(argv)
    import torch

    from directanimator.config import load_config
    from directanimator.model import build_codec
    from directanimator.pipeline import DirectAnimatorPipeline

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # the training commands too: one thread, as the CPU minutes say
    vae_dir = (ROOT / args.vae).resolve()
    vae = vae_record(vae_dir)
    eval_world = (ROOT / args.eval_world).resolve()
    if not (eval_world / "cross_id_pairs.jsonl").is_file():
        raise SystemExit(f"error: {eval_world} is not a puppet world with cross-ID triples (see fit_probe.py)")
    learned = {"kind": "cogvideox", "path": str(vae_dir)}
    model = load_config(ROOT / "configs" / "demo.yaml").model
    dct = build_codec(model)
    model.codec.kind, model.codec.path = learned["kind"], learned["path"]
    codecs = {LABELS[0]: dct, LABELS[1]: build_codec(model)}
    arms, pipes = [], {}
    for label, override in zip(LABELS, (None, learned)):
        for seed in args.seed or [0]:
            work = (ROOT / args.work).resolve() / arm_folder(args.clips, seed, override is not None)
            last, cpu = train_arm(work, args.clips, args.steps, seed=seed, codec=override)
            name = f"demo recipe on the {label}" + (f", seed {seed}" if seed else "")
            pipes[name] = DirectAnimatorPipeline.from_pretrained(str(last))
            arms.append({"name": name, "codec": label, "seed": seed, "steps": args.steps,
                         "train_cpu_seconds": round(cpu, 1), "checkpoint": shown(last)})
    pipes["embedded demo model"] = DirectAnimatorPipeline.from_pretrained(None)
    held = means(held_out_scores(eval_world, pipes, codecs))
    fits = {a["name"]: means(fit_scores((ROOT / a["checkpoint"]).parents[2] / "world", {a["name"]: pipes[a["name"]]},
                                        codecs)) for a in arms}
    encode = {label: round(encode_cpu_ms(c), 1) for label, c in codecs.items()}
    write_report(args, vae, encode, held, fits, arms)
    return 0


def write_report(args, vae: dict, encode: dict, held: dict, fits: dict, arms: list[dict]) -> None:
    seeds = " ".join(f"--seed {s}" for s in args.seed or [0])
    lines = ["# The toy's latent space: the DCT codec against a learned CogVideoX VAE", "",
             f"`python experiments/latent_space.py --vae {args.vae} --clips {args.clips} {seeds} --steps {args.steps} "
             f"--eval-world {args.eval_world}`", "",
             f"The VAE: `{'`, then `'.join(vae['commands'])}`: {vae['steps']:,} steps, "
             f"{vae['cpu_seconds'] / 3600:.2f} CPU hours, last training MSE {vae['final_mse']} (pixels in [-1, 1]). "
             f"Encoding one 64 px, 9-frame window (one thread, median of 5): DCT codec {encode[LABELS[0]]} ms, "
             f"VAE {encode[LABELS[1]]} ms; preprocessing pays it three times a window (target, Pose Cue, Face Cue), "
             "training reads the cached latents.", "",
             "How each score is made: experiments/fit_probe.py. Motion IoU: whether the answer moves where the "
             "truth moves (the still photo 0, a perfect answer 1).", ""]
    lines += findings(held, fits, arms)
    lines += [*table(f"held-out: {HELD_OUT} cross-ID triples of {args.eval_world}", held), ""]
    for a in arms:
        lines += [*table(f"fit, {a['name']}: its first 16 training clips", fits[a["name"]]), ""]
    out = ROOT / args.out
    out.write_text("\n".join(lines))
    record = {"vae": vae, "encode_cpu_ms": encode, "arms": arms, "held_out": held, "fit": fits}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
