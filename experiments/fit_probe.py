"""Can the demo recipe render moved limbs at all? Train it on a few clips until it has fit them, and
score it on those clips and on held-out triples, next to the trivial answers and the codec's oracles.
Writes experiments/reports/fit_probe.md and .json.

    .venv/bin/python experiments/fit_probe.py [--clips 16 --clips 256 --clips 256:4] [--steps 3000]
        [--eval-world out/claims/eval_world] [--work out/fit_probe]

Per arm, N[:W[:S]] (N training clips, train.person_loss_weight W, 0 if not given, training seed S, 0
if not given): a puppet world of N training clips (seed 31, 64 px, 17 frames), the same-ID stage of
configs/demo.yaml (4 x 128, patch 2, the DCT codec) for --steps steps on one thread, then two scores
of its last weights:

  fit        reconstruction of its own training clips (up to 16): each clip's stored reference photo
             (the person in another motion's first pose) animated by the clip itself, against the clip;
             the task the same-ID stage trains on, on the very examples it trained on
  held-out   the first 20 cross-ID triples of --eval-world (identities and motions never trained on;
             the claims study's scoring world: `directanimator synth --out out/claims/eval_world
             --identities 200 --motions 50 --clips 200 --frames 17 --size 64 --seed 12`)

Next to them: the still photo and the silhouette fill (the pasted driving video is the truth itself
in the fit score, so it is left out there), the coarse oracle (every 4x4 colour average right: the
codec's 3 DC channels of the truth), the codec's round trip of the truth, and the embedded demo model.
If a model that has fit its clips moves where the truth moves about as often as the codec's round
trip, neither the token grid nor the codec keeps the limbs from moving; what is missing on held-out
puppets is the general mapping, which is learned or not by the training, not drawn by the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from demo_model import sh
from error_study import coarse_oracle

ROOT = Path(__file__).resolve().parents[1]
DA = [str(Path(sys.executable).parent / "directanimator")]
FIT_CLIPS = 16
HELD_OUT = 20


def parse_arm(spec: str) -> tuple[int, float, int]:
    """'256', '256:4' or '256:4:1' -> (training clips, train.person_loss_weight, training seed)."""
    parts = spec.split(":")
    try:
        if len(parts) > 3:
            raise ValueError
        return int(parts[0]), float(parts[1] if len(parts) > 1 else 0), int(parts[2] if len(parts) > 2 else 0)
    except ValueError:
        raise SystemExit(f"error: --clips takes N, N:WEIGHT or N:WEIGHT:SEED, got {spec!r}") from None


def arm_config(work: Path, world: Path, person_weight: float = 0.0, seed: int = 0, codec: dict | None = None) -> Path:
    """configs/demo.yaml with validation on the arm's own world (4 triples), the shipped sampler and
    the arm's person weight and training seed; `codec` replaces model.codec (None: the DCT codec)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    if codec is not None:
        cfg["model"]["codec"] = dict(codec)
    cfg["train"].update(checkpoint_every=1000, log_every=50, seed=seed, person_loss_weight=person_weight)
    cfg["train"]["validation"] = {"triples": 4, "every": 1000, "sample_steps": 2, "dataset": str(world)}
    cfg["inference"] = {"steps": 2, "scheduler": "dpm", "window_overlap": 5}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_arm(work: Path, clips: int, steps: int, person_weight: float = 0.0, seed: int = 0,
              codec: dict | None = None) -> tuple[Path, float]:
    """(the last checkpoint, one-thread CPU seconds of training) for an arm of `clips` training clips."""
    world, run = work / "world", work / "run"
    work.mkdir(parents=True, exist_ok=True)
    if not (world / "manifest.jsonl").is_file():
        total = clips + max(1, (clips + 3) // 4)  # a fifth of all clips are test triples
        sh([*DA, "synth", "--out", str(world), "--identities", str(max(8, clips)), "--motions", str(max(8, clips)),
            "--clips", str(total), "--frames", "17", "--size", "64", "--seed", "31", "--quiet"])
    config = arm_config(work, world, person_weight, seed, codec)
    sh([*DA, "preprocess", "--dataset", str(world), "--config", str(config), "--quiet"])
    resume = ["--resume"] if (run / "checkpoints").is_dir() else []
    sh([*DA, "train", "--config", str(config), "--stage", "same_id", "--dataset", str(world), "--out", str(run),
        "--max-steps", str(steps), "--quiet", *resume])
    last = sorted((run / "checkpoints").glob("step_*"))[-1]
    return last, json.loads((run / "summary.json").read_text())["cpu_seconds"]


def oracle_answers(codecs: dict, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Each codec's round trip of the true video ("<label> round trip of the truth" for {label: codec}),
    and the coarse oracle of the DCT codec among them."""
    import torch

    from directanimator.windows import video_tensor

    out = {}
    for label, codec in codecs.items():
        if hasattr(codec, "keep_spatial"):  # the DCT codec: its colour averages alone
            out["coarse oracle (every 4x4 colour average right)"] = coarse_oracle(codec, truth)
        lat = codec.encode(video_tensor(truth), torch.Generator().manual_seed(0))
        rt = ((codec.decode(lat)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        out[f"{label} round trip of the truth"] = rt
    return out


def as_stored(frame: np.ndarray, tmp: Path) -> np.ndarray:
    """A rendered frame as the world's clips store theirs (H.264, crf 16, `write_clip`), read back. The
    stored reference photo is the raw render while the true clip went through the video codec: compared
    with the raw photo, the clip's compression noise at every edge would count as motion."""
    from directanimator.video import VideoWriter, iter_frames

    path = tmp / "reference.mp4"
    with VideoWriter(path, 15, frame.shape[1], frame.shape[0], crf=16, preset="medium") as w:
        w.write(frame)
    return next(iter_frames(path))


def fit_scores(world: Path, pipes: dict, codecs: dict) -> dict[str, list[dict]]:
    """{answer: per-clip metrics} on the self-reconstruction of the first FIT_CLIPS training clips, with
    the oracles of `codecs` ({label: codec})."""
    from directanimator.cues.detectors import Detectors
    from directanimator.data.format import clip_dir, read_annotations
    from directanimator.eval.puppet import TRIVIAL_NAMES, puppet_metrics, trivial_answers
    from directanimator.video import iter_frames

    manifest = [json.loads(x) for x in (world / "manifest.jsonl").read_text().splitlines() if x.strip()]
    ids = [m["clip_id"] for m in manifest if m["split"] == "train"][:FIT_CLIPS]
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cid in ids:
            ann = read_annotations(world, cid)
            video = clip_dir(world, cid) / "video.mp4"
            truth = np.stack(list(iter_frames(video)))
            ref, ref_mask = as_stored(ann["reference_frame"], Path(tmp)), ann["reference_mask"].astype(bool)
            answers = {TRIVIAL_NAMES[k]: v for k, v in trivial_answers(ref, ref_mask, truth, ann["masks"]).items()
                       if k != "pasted"}
            answers.update(oracle_answers(codecs, truth))
            detectors = Detectors.from_annotations(ann, {"masks": ref_mask[None],
                                                         "face_boxes": ann["reference_face_box"][None]})
            for name, pipe in pipes.items():
                out = Path(tmp) / "answer.mp4"
                pipe(ref, video, out, seed=0, progress=False, **detectors.kwargs())
                answers[name] = np.stack(list(iter_frames(out)))
            for name, v in answers.items():
                n = min(len(v), len(truth))
                rows.setdefault(name, []).append(puppet_metrics(v[:n], truth[:n], ann["masks"][:n], ref_mask, ref))
    return rows


def held_out_scores(world: Path, pipes: dict, codecs: dict) -> dict[str, list[dict]]:
    """{answer: per-triple metrics} on the first HELD_OUT cross-ID triples of `world`, with the oracles
    of `codecs` ({label: codec})."""
    from directanimator.data.format import clip_dir, read_annotations
    from directanimator.eval.puppet import TRIVIAL_NAMES, evaluate_triples, puppet_metrics
    from directanimator.video import iter_frames

    rows: dict[str, list[dict]] = {}
    for k, (name, pipe) in enumerate(pipes.items()):
        r = evaluate_triples(pipe, world, limit=HELD_OUT, seed=0, baselines=k == 0)
        rows[name] = r["triples"]
        for b, v in r["baseline_triples"].items():
            rows[TRIVIAL_NAMES[b]] = v
    triples = [json.loads(x) for x in (world / "cross_id_pairs.jsonl").read_text().splitlines() if x.strip()]
    for tr in triples[:HELD_OUT]:
        truth = np.stack(list(iter_frames(clip_dir(world, tr["ground_truth"]) / "video.mp4")))
        ref = next(iter_frames(clip_dir(world, tr["reference"]) / "video.mp4"))
        gt, ra = read_annotations(world, tr["ground_truth"]), read_annotations(world, tr["reference"])
        for name, v in oracle_answers(codecs, truth).items():
            rows.setdefault(name, []).append(puppet_metrics(v, truth, gt["masks"], ra["masks"][0], ref))
    return rows


def means(rows: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    keys = ("ssim", "psnr", "person_psnr", "moving_psnr", "motion_iou")
    return {name: {k: float(np.mean([x[k] for x in r if x.get(k) is not None])) for k in keys}
            for name, r in rows.items()}


def table(title: str, m: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"| {title} | SSIM | PSNR | person PSNR | moving PSNR | motion IoU |", "|---|---|---|---|---|---|"]
    for name, v in m.items():
        lines.append(f"| {name} | {v['ssim']:.3f} | {v['psnr']:.2f} | {v['person_psnr']:.2f} | "
                     f"{v['moving_psnr']:.2f} | {v['motion_iou']:.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", action="append", help="an arm: N training clips, N:WEIGHT with "
                    "train.person_loss_weight WEIGHT, N:WEIGHT:SEED with training seed SEED (repeatable; default 16)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-world", default="out/claims/eval_world")
    ap.add_argument("--work", default="out/fit_probe")
    ap.add_argument("--out", default="experiments/reports/fit_probe.md")
    args = ap.parse_args()
    import torch

    from directanimator.config import load_config
    from directanimator.model import build_codec
    from directanimator.pipeline import DirectAnimatorPipeline

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # the training commands too: one thread, as the CPU minutes say
    codec = build_codec(load_config(ROOT / "configs" / "demo.yaml").model)
    eval_world = (ROOT / args.eval_world).resolve()
    if not (eval_world / "cross_id_pairs.jsonl").is_file():
        raise SystemExit(f"error: {eval_world} is not a puppet world with cross-ID triples (see the docstring)")
    results, lines = [], report_head(args)
    for clips, weight, seed in map(parse_arm, args.clips or ["16"]):
        t0 = time.time()
        folder = f"clips{clips}" + (f"_person{weight:g}" if weight else "") + (f"_seed{seed}" if seed else "")
        last, cpu = train_arm((ROOT / args.work).resolve() / folder, clips, args.steps, weight, seed)
        person = (f", person weight {weight:g}" if weight else "") + (f", seed {seed}" if seed else "")
        name = f"demo recipe fit on {clips} clips{person} ({args.steps:,} steps)"
        pipes = {name: DirectAnimatorPipeline.from_pretrained(str(last)),
                 "embedded demo model": DirectAnimatorPipeline.from_pretrained(None)}
        fit = means(fit_scores(last.parents[2] / "world", pipes, {"codec": codec}))
        held = means(held_out_scores(eval_world, pipes, {"codec": codec}))
        results.append({"clips": clips, "person_loss_weight": weight, "seed": seed, "steps": args.steps,
                        "train_cpu_seconds": round(cpu, 1),
                        "wall_seconds": round(time.time() - t0, 1), "fit": fit, "held_out": held})
        lines += [f"## {clips} training clips{person}", "", f"Training: {cpu / 60:.1f} one-thread CPU minutes.", "",
                  *table(f"fit: its first {min(clips, FIT_CLIPS)} training clips", fit), "",
                  *table(f"held-out: {HELD_OUT} cross-ID triples of {args.eval_world}", held), ""]
    lines[len(report_head(args)):len(report_head(args))] = findings(results)
    out = ROOT / args.out
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))


def findings(results: list[dict]) -> list[str]:
    """One line per arm: motion IoU and person PSNR fit and held out, against the oracles."""
    lines = ["## What it shows", ""]
    for r in results:
        fit, held = r["fit"], r["held_out"]
        model = next(k for k in fit if k.startswith("demo recipe"))
        rt, coarse = "codec round trip of the truth", "coarse oracle (every 4x4 colour average right)"
        person = ((f", person weight {r['person_loss_weight']:g}" if r["person_loss_weight"] else "")
                  + (f", seed {r['seed']}" if r["seed"] else ""))
        lines.append(
            f"- {r['clips']} training clips{person}, {r['steps']:,} steps: on its own training clips motion IoU "
            f"{fit[model]['motion_iou']:.3f} (the codec's round trip {fit[rt]['motion_iou']:.3f}, the coarse oracle "
            f"{fit[coarse]['motion_iou']:.3f}), person PSNR {fit[model]['person_psnr']:.2f} "
            f"({fit[rt]['person_psnr']:.2f}, {fit[coarse]['person_psnr']:.2f}); held out motion IoU "
            f"{held[model]['motion_iou']:.3f}, person PSNR {held[model]['person_psnr']:.2f} (the embedded model "
            f"{held['embedded demo model']['motion_iou']:.3f}, {held['embedded demo model']['person_psnr']:.2f}).")
    return lines + [""]


def report_head(args) -> list[str]:
    clips = " ".join(f"--clips {c}" for c in args.clips or ["16"])
    return ["# Can the demo recipe render moved limbs? A fit probe", "",
            f"`python experiments/fit_probe.py {clips} --steps {args.steps} --eval-world {args.eval_world}`", "",
            "How each score is made: experiments/fit_probe.py. Motion IoU: whether the answer moves where the truth "
            "moves (the still photo 0, a perfect answer 1).", ""]


if __name__ == "__main__":
    main()
