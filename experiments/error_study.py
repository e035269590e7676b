"""Where the demo model's error sits on held-out puppets: by body part, by frame, and whether the
reference person's colours reach the places the limbs moved to. Writes experiments/reports/error_study.md.

    .venv/bin/python experiments/error_study.py [--world out/claims/eval_world] [--triples 20]
        [--model RUN_OR_PIPELINE] [--out experiments/reports/error_study.md]

The world must hold cross-ID triples whose identities and motions were never trained on (the claims
study's scoring world, seed 12: `directanimator synth --out W --identities 200 --motions 50 --clips 200
--frames 17 --size 64 --seed 12`). Every answer is compared with the true render:

  the model          the embedded demo model, or --model
  trivial answers    the reference photo held still, the driving video pasted, the silhouette fill
  coarse oracle      the truth with every 4x4 cell's colour average right and nothing else (the
                     truth through the codec keeping only its 3 DC channels)

Measures (pixels pooled over frames and triples):
  part PSNR          over the true person's pixels within 2 px of one limb segment of the true
                     keypoints (head, torso, upper arms, forearms, thighs, shins)
  colour reached     over the true person's pixels that lie outside the reference person (dilated
                     2 px), where the still photo shows background: the fraction where the answer is
                     nearer the truth than the reference photo there (RGB distance); the still photo
                     scores 0, the truth 1
  frame PSNR         moving-region PSNR by frame index (windows of 9 frames start every 4)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ceiling import dc_channels

ROOT = Path(__file__).resolve().parents[1]

# COCO keypoints: 0 nose, 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips, 13/14 knees, 15/16 ankles
PARTS = {"head": [(0, 0)], "torso": [(5, 6), (11, 12), (5, 11), (6, 12), (5, 12), (6, 11)],
         "upper arms": [(5, 7), (6, 8)], "forearms": [(7, 9), (8, 10)], "thighs": [(11, 13), (12, 14)],
         "shins": [(13, 15), (14, 16)]}
HEAD_RADIUS = 4.0  # px at 64: the head drawn around the nose keypoint


def part_masks(keypoints: np.ndarray, person: np.ndarray, radius: float = 2.0) -> dict[str, np.ndarray]:
    """{part: (T, H, W) bool}: the true person's pixels near each part's segments."""
    t, h, w = person.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = {}
    for name, segments in PARTS.items():
        near = np.zeros((t, h, w), bool)
        for f in range(t):
            for a, b in segments:
                pa, pb = keypoints[f, a, :2], keypoints[f, b, :2]
                if keypoints[f, a, 2] <= 0 or keypoints[f, b, 2] <= 0:
                    continue
                d = pb - pa
                s = np.clip(((xx - pa[0]) * d[0] + (yy - pa[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
                dist = np.hypot(xx - pa[0] - s * d[0], yy - pa[1] - s * d[1])
                near[f] |= dist <= (HEAD_RADIUS if name == "head" else radius)
        out[name] = near & person
    return out


def dilate(masks: np.ndarray, px: int = 2) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])


class Pool:
    """Squared errors and counts pooled per (answer, measure), for PSNR over all pixels pooled."""

    def __init__(self) -> None:
        self.sse: dict[tuple[str, str], float] = {}
        self.n: dict[tuple[str, str], int] = {}

    def add(self, answer: str, measure: str, video: np.ndarray, truth: np.ndarray, region: np.ndarray) -> None:
        diff = (video.astype(np.float64) - truth.astype(np.float64))[region]
        key = (answer, measure)
        self.sse[key] = self.sse.get(key, 0.0) + float(np.square(diff).sum())
        self.n[key] = self.n.get(key, 0) + diff.size

    def psnr(self, answer: str, measure: str) -> float | None:
        n = self.n.get((answer, measure), 0)
        if not n:
            return None
        mse = self.sse[(answer, measure)] / n
        return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def colour_reached(video: np.ndarray, truth: np.ndarray, reference: np.ndarray, region: np.ndarray) -> tuple[int, int]:
    """(pixels where the answer is nearer the truth than the reference photo, pixels) over `region`."""
    v, t = video.astype(np.float32)[region], truth.astype(np.float32)[region]
    r = np.broadcast_to(reference.astype(np.float32)[None], truth.shape)[region]
    nearer = np.linalg.norm(v - t, axis=-1) < np.linalg.norm(v - r, axis=-1)
    return int(nearer.sum()), int(nearer.size)


def coarse_oracle(codec, truth: np.ndarray) -> np.ndarray:
    """The truth through the codec, only the 3 DC channels kept (every 4x4 cell's colour average)."""
    from directanimator.windows import video_tensor

    video = codec.decode(dc_channels(codec, codec.encode(video_tensor(truth))))[0]
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def answers_of(pipe, world: Path, tr: dict, tmp: Path, samplers: list[tuple[str, int]]
               ) -> tuple[dict[str, np.ndarray], dict]:
    """({answer name: video}, the truth's data) for one triple, all cut to the truth's frame count; the
    model once per (scheduler, steps) of `samplers`."""
    from directanimator.pipeline import make_inference_scheduler
    from directanimator.cues.detectors import Detectors
    from directanimator.data.format import clip_dir, read_annotations
    from directanimator.eval.puppet import TRIVIAL_NAMES, trivial_answers
    from directanimator.video import iter_frames

    def video(clip: str) -> np.ndarray:
        return np.stack(list(iter_frames(clip_dir(world, clip) / "video.mp4")))

    reference = video(tr["reference"])[0]
    ref_ann, drv_ann, gt_ann = (read_annotations(world, tr[k]) for k in ("reference", "driving", "ground_truth"))
    truth, driving = video(tr["ground_truth"]), video(tr["driving"])
    n = min(len(truth), len(driving))
    got = {}
    for kind, steps in samplers:
        pipe.scheduler = make_inference_scheduler(kind)
        out = tmp / "model.mp4"
        pipe(reference, clip_dir(world, tr["driving"]) / "video.mp4", out, seed=0, steps=steps, progress=False,
             **Detectors.from_annotations(drv_ann, ref_ann, skeleton_errors=pipe.config.cues.pose.skeleton_errors
                                          ).kwargs())
        got[f"model ({kind}, {steps} steps)"] = np.stack(list(iter_frames(out)))[:n]
    for k, v in trivial_answers(reference, ref_ann["masks"][0].astype(bool), driving[:n], drv_ann["masks"][:n]).items():
        got[f"trivial: {TRIVIAL_NAMES[k]}"] = v
    got["coarse oracle: every 4x4 colour average right"] = coarse_oracle(pipe.codec, truth[:n])
    data = {"truth": truth[:n], "reference": reference, "person": gt_ann["masks"][:n].astype(bool),
            "keypoints": gt_ann["keypoints"][:n], "reference_mask": ref_ann["masks"][0].astype(bool)}
    return got, data


def study(pipe, world: Path, triples: int, samplers: list[tuple[str, int]]) -> dict:
    """The pooled measures of every answer over the first `triples` triples."""
    import tempfile

    from directanimator.eval.puppet import moving_region

    pool, reached = Pool(), {}
    lines = (world / "cross_id_pairs.jsonl").read_text().splitlines()[:triples]
    with tempfile.TemporaryDirectory() as tmp:
        for line in lines:
            got, d = answers_of(pipe, world, json.loads(line), Path(tmp), samplers)
            truth, person = d["truth"], d["person"]
            parts = part_masks(d["keypoints"], person)
            moving = moving_region(person, d["reference_mask"]).astype(bool)
            moved_to = person & ~dilate(d["reference_mask"][None])[0][None]
            for name, video in got.items():
                for part, region in parts.items():
                    pool.add(name, part, video, truth, region)
                for f in range(len(truth)):
                    pool.add(name, f"frame {f}", video[f:f + 1], truth[f:f + 1], moving[f:f + 1])
                hit, total = colour_reached(video, truth, d["reference"], moved_to)
                h0, t0 = reached.get(name, (0, 0))
                reached[name] = (h0 + hit, t0 + total)
    names = list(reached)
    frames = sorted({m for _, m in pool.n if m.startswith("frame")}, key=lambda m: int(m.split()[1]))
    return {"answers": names, "triples": len(lines),
            "part_psnr": {a: {p: pool.psnr(a, p) for p in PARTS} for a in names},
            "colour_reached": {a: reached[a][0] / max(reached[a][1], 1) for a in names},
            "moved_to_pixels": reached[names[0]][1],
            "frame_psnr": {a: [pool.psnr(a, f) for f in frames] for a in names}}


def findings(res: dict) -> list[str]:
    """What the numbers say, in sentences built from them (the first model row is the model's own
    sampler, or the first --sampler)."""
    names = res["answers"]
    model = names[0]
    still, fill = next(a for a in names if "still" in a), next(a for a in names if "silhouette" in a)
    oracle = next(a for a in names if a.startswith("coarse"))
    reached = res["colour_reached"]
    best = max((a for a in names if a.startswith("model")), key=lambda a: reached[a])
    parts = res["part_psnr"][model]
    worst = min(parts, key=lambda k: parts[k])
    gap = [m - s for m, s in zip(res["frame_psnr"][model], res["frame_psnr"][still])]
    return [
        f"- Where the true person moved to (outside the reference person), the {model} paints a colour nearer the truth "
        f"than the photo's at {reached[model]:.0%} of the pixels: the silhouette fill reaches {reached[fill]:.0%}, "
        f"the coarse oracle {reached[oracle]:.0%}. The most of any sampler tried is {reached[best]:.0%} "
        f"({best}), still {'below' if reached[best] < reached[fill] else 'above'} the silhouette fill's.",
        f"- By part, the {model} is worst on the {worst} ({parts[worst]:.2f} dB; the still photo "
        f"{res['part_psnr'][still][worst]:.2f}, the coarse oracle {res['part_psnr'][oracle][worst]:.2f}).",
        f"- By frame, its margin over the still photo goes from {gap[0]:+.1f} dB at frame 0 to {gap[-1]:+.1f} dB at "
        f"frame {len(gap) - 1}, while it stays {min(o - m for o, m in zip(res['frame_psnr'][oracle], res['frame_psnr'][model])):.1f}"
        f" to {max(o - m for o, m in zip(res['frame_psnr'][oracle], res['frame_psnr'][model])):.1f} dB below the coarse "
        f"oracle on every frame: no frame or window position carries the error, it is everywhere.",
    ]


def report(res: dict, command: str, cpu_seconds: float) -> str:
    def fmt(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    lines = ["# Where the demo model's error sits", "", f"`{command}`", "",
             f"{res['triples']} held-out cross-ID triples ({res['world']}); {cpu_seconds:.0f} CPU seconds (one thread). "
             "How each measure is made: experiments/error_study.py.", "", "## What it shows", "", *findings(res), "",
             "## PSNR by body part (dB, the true person's pixels within 2 px of the part's segments)", "",
             "| answer | " + " | ".join(PARTS) + " | colour reached |", "|---|" + "---|" * (len(PARTS) + 1)]
    for a in res["answers"]:
        lines.append(f"| {a} | " + " | ".join(fmt(res["part_psnr"][a][p]) for p in PARTS)
                     + f" | {fmt(res['colour_reached'][a], '.3f')} |")
    lines += ["", f"Colour reached: over the {res['moved_to_pixels']:,} true person pixels outside the reference "
              "person (dilated 2 px), where the still photo shows background, the fraction where the answer is "
              "nearer the truth than the photo.", "",
              "## Moving-region PSNR by frame (dB)", "",
              "| answer | " + " | ".join(str(i) for i in range(len(res["frame_psnr"][res["answers"][0]]))) + " |",
              "|---|" + "---|" * len(res["frame_psnr"][res["answers"][0]])]
    for a in res["answers"]:
        lines.append(f"| {a} | " + " | ".join(fmt(v, ".1f") for v in res["frame_psnr"][a]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="out/claims/eval_world")
    ap.add_argument("--triples", type=int, default=20)
    ap.add_argument("--model", default=None, help="a run or pipeline folder (default: the embedded demo model)")
    ap.add_argument("--sampler", action="append", default=[], metavar="SCHEDULER:STEPS",
                    help="ddim|dpm:N, repeatable (default: the model's own)")
    ap.add_argument("--out", default="experiments/reports/error_study.md")
    args = ap.parse_args()
    import sys

    import torch

    from directanimator.pipeline import DirectAnimatorPipeline

    torch.set_num_threads(1)
    cpu0 = time.process_time()
    pipe = DirectAnimatorPipeline.from_pretrained(args.model)
    inf = pipe.config.inference
    samplers = [(k, int(n)) for k, n in (x.split(":") for x in args.sampler)] or [(inf.scheduler, inf.steps)]
    res = study(pipe, ROOT / args.world, args.triples, samplers)
    res["world"] = args.world
    command = "python experiments/error_study.py " + " ".join(sys.argv[1:])
    out = ROOT / args.out
    out.write_text(report(res, command.strip(), time.process_time() - cpu0))
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
