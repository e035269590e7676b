"""Why the S2X term does so little at toy scale: what it compares, block by block, on a cross-ID run's
own training batches. Writes experiments/reports/s2x_probe.md and .json.

    .venv/bin/python experiments/s2x_probe.py --run out/claims/full/seed1 [--batches 8] [--seed 0]

RUN is a claims-study run folder (`experiments/claims.py run`): `cross_id/` a cross-ID run trained with
S2X against its `train.teacher` (the same-ID run's latest checkpoint, as the run loaded it), both runs'
checkpoints still there. On --batches batches of the cross-ID stage's training data (pseudo cues
for the student, the clip's own cues for the teacher, as `Same2XObjective.inputs` draws them), for the
vision tokens after each block D:

  S2X cosine            cos(teacher on real cues, student on pseudo cues): minus the S2X loss; at the
                        start of the cross-ID stage the student is the teacher
  pseudo vs real        cos(teacher on real cues, teacher on pseudo cues): the same model, only the cues
                        differ (what S2X asks the student to undo, at the start)
  cues' share           1 - cos(teacher on real cues, teacher with the cues zeroed): how much of the
                        tokens the cues set at all
  cue difference        |pseudo - real| / |real| of the Pose and Face Cue latents themselves
  gradient ratio        |grad of lambda x S2X| / |grad of the denoising loss| over the student's weights,
                        at the start (student = teacher) and at the end (the trained student)

If the tokens at D hardly depend on the cues, the S2X cosine is near 1 from the first step and its
gradient small next to the denoising loss's: the term has little to align and little to say.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine over tokens, as the S2X loss takes it."""
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).mean())


def features(model, x, enc, t, cues: dict, depths: tuple[int, ...]) -> dict[int, torch.Tensor]:
    with torch.no_grad():
        return model(x, enc, t, **cues, feature_depths=depths, features_only=True).features


def grad_norm(model, loss: torch.Tensor) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def gradient_ratio(objective, student, inputs: dict, enc, depth: int, weight: float) -> float:
    """|grad of weight x S2X at `depth`| / |grad of the denoising loss| over the student's weights."""
    objective.depth = depth
    loss_d, loss_a = objective(student, encoder_hidden_states=enc, **inputs)
    return grad_norm(student, weight * loss_a) / max(grad_norm(student, loss_d), 1e-12)


def probe(run: Path, batches: int, seed: int) -> dict:
    from torch.utils.data import DataLoader

    from directanimator.config import load_config
    from directanimator.data.dataset import CachedSamples
    from directanimator.model import build_codec, build_text_encoder
    from directanimator.model.loading import load_transformer
    from directanimator.train.losses import make_objective
    from directanimator.train.trainer import s2x_depth

    cfg = load_config(run / "cross_id" / "config.yaml")
    # the teacher as the run loaded it (its same-ID run: the latest checkpoint), the student at the
    # start (the teacher itself) and at the end of the cross-ID stage (its latest checkpoint)
    teacher = load_transformer(cfg.train.teacher).float().eval().requires_grad_(False)
    start = copy.deepcopy(teacher).train().requires_grad_(True)  # as the trainer makes the student
    end = load_transformer(run / "cross_id").float().train()
    layers = teacher.config.num_layers
    depths = tuple(range(1, layers + 1))
    codec = build_codec(cfg.model)
    data = CachedSamples(cfg.data.dataset, cfg, "cross_id")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=gen)[: batches * cfg.train.batch_size].tolist()
    loader = DataLoader(torch.utils.data.Subset(data, order), batch_size=cfg.train.batch_size)
    text = build_text_encoder(cfg.model, teacher)
    objective = make_objective(cfg, start, teacher, depth=1)
    objective.cue_dropout = 0.0
    rows = {d: {k: [] for k in ("s2x_end", "pseudo_vs_real", "cue_share", "grad_start", "grad_end")} for d in depths}
    inputs_diff: dict[str, list[float]] = {"pose_latents": [], "face_latents": []}
    for batch in loader:
        inputs = objective.inputs(start, batch, gen)
        enc = text([cfg.model.text.prompt] * inputs["latents"].shape[0], device="cpu")
        x, t = inputs["x"], inputs["t"]
        real, pseudo = inputs["teacher_cues"], inputs["cues"]
        zero = {k: torch.zeros_like(v) for k, v in real.items()}
        for k, v in inputs_diff.items():
            v.append(float((pseudo[k] - real[k]).norm() / real[k].norm().clamp_min(1e-12)))
        h_real = features(teacher, x, enc, t, real, depths)
        h_pseudo = features(teacher, x, enc, t, pseudo, depths)
        h_zero = features(teacher, x, enc, t, zero, depths)
        h_end = features(end, x, enc, t, pseudo, depths)
        for d in depths:
            rows[d]["s2x_end"].append(cos(h_real[d], h_end[d]))
            rows[d]["pseudo_vs_real"].append(cos(h_real[d], h_pseudo[d]))
            rows[d]["cue_share"].append(1 - cos(h_real[d], h_zero[d]))
            rows[d]["grad_start"].append(gradient_ratio(objective, start, inputs, enc, d, cfg.train.s2x.weight))
            rows[d]["grad_end"].append(gradient_ratio(objective, end, inputs, enc, d, cfg.train.s2x.weight))
    return {"run": str(run), "trained_depth": s2x_depth(cfg, layers), "weight": cfg.train.s2x.weight,
            "batches": batches, "batch_size": cfg.train.batch_size, "layers": layers,
            "cue_input_difference": {k: float(np.mean(v)) for k, v in inputs_diff.items()},
            "by_depth": {d: {k: float(np.mean(v)) for k, v in r.items()} for d, r in rows.items()}}


def report(result: dict, command: str) -> list[str]:
    lines = ["# What the S2X term compares at toy scale", "", f"`{command}`", "",
             f"{result['batches']} batches of {result['batch_size']} cross-ID training windows; the run trained with "
             f"S2X at depth {result['trained_depth']} of {result['layers']} blocks, weight {result['weight']}. "
             "How each figure is made: experiments/s2x_probe.py.", "",
             "The cues themselves: |pseudo - real| / |real| of the cue latents, Pose Cue "
             f"{result['cue_input_difference']['pose_latents']:.3f}, Face Cue "
             f"{result['cue_input_difference']['face_latents']:.3f}.", "",
             "| block D | S2X cosine at the start (= pseudo vs real) | S2X cosine, trained student | cues' share "
             "of the tokens | gradient ratio λ·S2X / denoising, start | same, trained student |",
             "|---|---|---|---|---|---|"]
    for d, r in result["by_depth"].items():
        lines.append(f"| {d} | {r['pseudo_vs_real']:.4f} | {r['s2x_end']:.4f} | {r['cue_share']:.4f} | "
                     f"{r['grad_start']:.3f} | {r['grad_end']:.3f} |")
    return lines + ["", *findings(result), ""]


def findings(result: dict) -> list[str]:
    """What the figures at the trained depth say, in words, from the figures."""
    d = result["trained_depth"]
    r, diff = result["by_depth"][d], result["cue_input_difference"]
    return ["## What it shows", "",
            f"At the trained depth D = {d} the cues set {r['cue_share']:.3f} of the tokens' direction (1 - cosine "
            f"with the cues zeroed). The pseudo cues differ from the real ones by {100 * diff['pose_latents']:.0f}% "
            f"(Pose Cue) and {100 * diff['face_latents']:.0f}% (Face Cue) of their latents, but move the teacher's "
            f"tokens there by only {1 - r['pseudo_vs_real']:.4f} of cosine: the S2X term starts at "
            f"{r['pseudo_vs_real']:.4f} and the trained student ends at {r['s2x_end']:.4f}. Its gradient is "
            f"{r['grad_start']:.3f} of the denoising loss's at the start and {r['grad_end']:.3f} at the end: the "
            "term has little to align at this depth and moves the student little.", "",
            *deeper(result)]


def deeper(result: dict) -> list[str]:
    """Where the trained student is furthest from the teacher, and how hard S2X would pull there."""
    d = min(result["by_depth"], key=lambda k: result["by_depth"][k]["s2x_end"])
    r = result["by_depth"][d]
    if d == result["trained_depth"]:
        return []
    return [f"Deeper, the student trained with S2X at D = {result['trained_depth']} drifts from the teacher: at block "
            f"{d} its cosine is {r['s2x_end']:.4f}, and a term at that depth would pull {r['grad_end']:.1f}x as hard "
            "as the denoising loss, towards the same-ID teacher (the study's D = 2 and D = 3 arms measure what "
            "that does)."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="experiments/reports/s2x_probe.md")
    args = ap.parse_args(argv)
    run = Path(args.run)
    for need in ("cross_id/checkpoints", "cross_id/config.yaml"):
        if not (run / need).exists():
            raise SystemExit(f"error: {run} has no {need} (a claims-study run folder: experiments/claims.py run)")
    torch.set_num_threads(1)
    result = probe(run, args.batches, args.seed)
    command = f"python experiments/s2x_probe.py --run {args.run} --batches {args.batches} --seed {args.seed}"
    lines = report(result, command)
    out = ROOT / args.out
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({**result, "command": command}, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
