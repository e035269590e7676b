"""Seams between windows, with ground truth: latent window fusion against the pixel cross-fade.

    .venv/bin/python benchmarks/window_seams.py [--checkpoint DIR] [--clips 6] [--frames 33]
        [--steps N] [--scheduler ddim|dpm] [--fused-steps N ...] [--window FRAMES] [--overlap FRAMES]

Each clip: a puppet (identity 901 + k in scene 702 + k) animated by another puppet's motion
(identity 900 + k, motion 800 + k), so the true answer is the reference puppet performing that
motion in its own scene, rendered directly. The pipeline runs with the world's ground-truth masks
and face boxes, once per `inference.window_fusion`. Per frame pair t, t+1 the output's mean absolute
change d_out(t) is compared with the truth's d_gt(t); a seam is where the output jumps and the truth
does not: |d_out - d_gt| at the frame pairs where a window starts or ends (the joins), against the
other frame pairs. Also PSNR against the truth, and two ratios to the truth (1 = as much as the
truth has): `motion`, the mean frame-to-frame change, and `detail`, the mean difference between
neighbouring pixels in a frame; averaging unlike samples, of decoded windows (the cross-fade) or of
the windows' predictions at each step (fusion), lowers both. Medians over the clips' means; and, clip
by clip, each way's error at the joins against the cross-fade's on the same clip (in how many clips it
is lower, the median difference, an exact two-sided sign test), since the medians differ by a few per
cent.

A number means nothing without the trivial answers next to it: the same metrics, at the same frame
pairs, for the three of `directanimator.eval.puppet.trivial_answers` on the same clips (the reference
photo held still: its error at every pair is the truth's own motion; the driving video pasted as it
is; the silhouette fill). They have no windows, so for them "joins" are only the same frame pairs.

`--window F` runs the model on windows of F frames (1 + 4k) instead of the `model.frames` it was
trained on, window starts still 4 frames apart (overlap F - 4): longer windows share more latent
frames between neighbours (the transformer's sin-cos position table is rebuilt for any length).
`--overlap F` sets the frames shared by neighbours instead (starts window - F apart, a multiple of 4):
the configs' default is 5, one shared latent frame (CogVideoX's 49-frame windows every 44 frames).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np



def join_pairs(starts: list[int], window: int, n: int) -> set[int]:
    """Frame pairs (t, t+1), by t, where one window's frames give way to another's."""
    pairs = {s - 1 for s in starts[1:]} | {s + window - 1 for s in starts[:-1]}
    return {t for t in pairs if 0 <= t < n - 1}


@lru_cache(maxsize=None)
def puppet_clip(k: int, frames: int):
    """Clip k: (driving, reference, truth float32) rendered from the puppet world, once per run (every
    way of joining windows and the trivial answers score the same clips; the arrays are only read)."""
    from directanimator.synth.render import render_clip

    driving = render_clip(900 + k, 800 + k, 700 + k, frames, 64)
    reference = render_clip(901 + k, 801 + k, 702 + k, 1, 64)
    truth = render_clip(901 + k, 800 + k, 702 + k, frames, 64).frames.astype(np.float32)
    return driving, reference, truth


def scores(video: np.ndarray, truth: np.ndarray, joins: set[int]) -> dict:
    """The table's metrics of a (T, H, W, 3) float32 video against the truth; `joins` by frame pair."""
    from directanimator.eval.pixel import psnr

    n = len(truth)
    d_out = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))
    d_gt = np.abs(np.diff(truth, axis=0)).mean(axis=(1, 2, 3))
    excess = np.abs(d_out - d_gt)
    inside = [t for t in range(n - 1) if t not in joins]
    return {"join_excess": float(excess[sorted(joins)].mean()), "inside_excess": float(excess[inside].mean()),
            "join_max": float(excess[sorted(joins)].max()), "psnr": psnr(video.astype(np.uint8), truth.astype(np.uint8)),
            "motion": float(d_out.mean() / d_gt.mean()), "detail": detail(video) / detail(truth)}


def clip_starts(pipe, frames: int) -> list[int]:
    """The window starts the pipeline, as configured now, uses on a clip of `frames` frames."""
    from directanimator.windows import windows_covering

    cfg = pipe.config
    return windows_covering(frames, cfg.model.frames, cfg.inference.window_overlap, pipe.codec.temporal_factor)


def clip_joins(pipe, frames: int) -> set[int]:
    return join_pairs(clip_starts(pipe, frames), pipe.config.model.frames, frames)


def trivial_rows(pipe, k: int, frames: int) -> dict[str, dict]:
    """The trivial answers' scores on clip k (no model run), by name."""
    from directanimator.eval.puppet import trivial_answers

    driving, reference, truth = puppet_clip(k, frames)
    answers = trivial_answers(reference.frames[0], reference.masks[0], driving.frames, driving.masks)
    joins = clip_joins(pipe, frames)
    return {name: scores(video.astype(np.float32), truth, joins) for name, video in answers.items()}


def run_clip(pipe, k: int, frames: int, tmp: Path, fusion: str, steps: int | None = None) -> dict:
    from directanimator.cues.detectors import Detectors
    from directanimator.video import VideoWriter, iter_frames

    driving, reference, truth = puppet_clip(k, frames)
    drv = tmp / f"driving_{k}.mp4"
    if not drv.exists():
        writer = VideoWriter(drv, 15, 64, 64, crf=18)
        for frame in driving.frames:
            writer.write(frame)
        writer.close()
    cfg = pipe.config
    pipe.config = replace(cfg, inference=replace(cfg.inference, window_fusion=fusion))
    out = tmp / f"{fusion}_{k}.mp4"
    t0 = time.perf_counter()
    pipe(reference.frames[0], drv, out, steps=steps, progress=False,
         **Detectors.from_annotations({"masks": driving.masks, "face_boxes": driving.face_boxes}, reference).kwargs())
    seconds = time.perf_counter() - t0
    pipe.config = cfg
    video = np.stack(list(iter_frames(out))).astype(np.float32)
    return {**scores(video, truth, clip_joins(pipe, frames)), "seconds": seconds}


def detail(video: np.ndarray) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixels: how much
    fine spatial detail the frames hold (averaging unlike samples lowers it)."""
    return float(np.abs(np.diff(video, axis=2)).mean() + np.abs(np.diff(video, axis=1)).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="pipeline folder (default: the embedded demo model)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    ap.add_argument("--scheduler", choices=["ddim", "dpm"], default=None)
    ap.add_argument("--window", type=int, default=None,
                    help="frames per window at inference (1 + 4k; default: the model's), overlap window - 4")
    ap.add_argument("--overlap", type=int, default=None,
                    help="frames shared by neighbouring windows (default: window - 4 with --window, else the "
                         "config's inference.window_overlap)")
    ap.add_argument("--fused-steps", type=int, nargs="*", default=[],
                    help="also latent fusion at the first N steps only (inference.fused_steps), one run per N")
    args = ap.parse_args()
    from directanimator.pipeline import DirectAnimatorPipeline

    pipe = DirectAnimatorPipeline.from_pretrained(args.checkpoint, scheduler=args.scheduler)
    t, cfg = pipe.codec.temporal_factor, pipe.config
    window = cfg.model.frames if args.window is None else args.window
    if window < 1 + t or (window - 1) % t:
        sys.exit(f"error: --window must be 1 + {t}k frames, k >= 1; got {window}")
    overlap = args.overlap if args.overlap is not None else (
        window - t if args.window is not None else cfg.inference.window_overlap)
    if not 0 < overlap < window or (window - overlap) % t:
        sys.exit(f"error: --overlap must leave windows starting a multiple of {t} frames apart, "
                 f"between 1 and {window - 1}; got {overlap}")
    pipe.config = replace(cfg, model=replace(cfg.model, frames=window),
                          inference=replace(cfg.inference, window_overlap=overlap))
    c = pipe.config  # what every run below uses
    print(f"windows of {c.model.frames} frames overlapping by {c.inference.window_overlap}: starts "
          f"{clip_starts(pipe, args.frames)} on {args.frames} frames", flush=True)
    rows, joins = {}, {}  # joins: each clip's error at the joins, by way of joining
    with tempfile.TemporaryDirectory() as tmp:
        base = pipe.config
        for fusion, fused_steps in [("pixel", None), ("latent", None)] + [("latent", n) for n in args.fused_steps]:
            name = fusion if fused_steps is None else f"latent, fused at the first {fused_steps} steps"
            pipe.config = replace(base, inference=replace(base.inference, fused_steps=fused_steps))
            per = [run_clip(pipe, k, args.frames, Path(tmp), fusion, args.steps) for k in range(args.clips)]
            pipe.config = base
            rows[name] = {key: float(np.median([p[key] for p in per])) for key in per[0]}
            joins[name] = [p["join_excess"] for p in per]
            print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
        from directanimator.eval.puppet import TRIVIAL_NAMES

        trivial = [trivial_rows(pipe, k, args.frames) for k in range(args.clips)]
        for key, name in TRIVIAL_NAMES.items():
            rows[f"trivial: {name}"] = {m: float(np.median([t[key][m] for t in trivial])) for m in trivial[0][key]}
            print(f"trivial: {name}", json.dumps({m: round(v, 3) for m, v in rows[f"trivial: {name}"].items()}),
                  flush=True)
    print("| window fusion | temporal-change error at joins | elsewhere | worst join | PSNR (dB) | motion | detail "
          "| s/clip |")
    print("|---|---|---|---|---|---|---|---|")
    for fusion, r in rows.items():
        print(f"| {fusion} | {r['join_excess']:.2f} | {r['inside_excess']:.2f} | {r['join_max']:.2f} | "
              f"{r['psnr']:.2f} | {r['motion']:.3f} | {r['detail']:.3f} | "
              f"{'-' if 'seconds' not in r else format(r['seconds'], '.1f')} |")  # no model run: no time
    print("joins / elsewhere: " + ", ".join(f"{name} {r['join_excess'] / r['inside_excess']:.2f}x"
                                           for name, r in rows.items()))
    for name in list(joins)[1:]:  # clip by clip against the cross-fade, on the same clips
        lower, diff = paired_against(joins[name], joins["pixel"])
        print(f"{name} against the cross-fade at the joins, clip by clip: lower in {lower} of {len(diff)} clips, "
              f"median difference {np.median(diff):+.3f}, two-sided sign test p = {sign_test(lower, len(diff)):.3g}")


def paired_against(values: list[float], baseline: list[float]) -> tuple[int, np.ndarray]:
    """(clips where `values` is below `baseline`, per-clip differences values - baseline)."""
    diff = np.asarray(values) - np.asarray(baseline)
    return int((diff < 0).sum()), diff


def sign_test(lower: int, n: int) -> float:
    """Two-sided exact sign test of `lower` of `n` paired differences below zero (scipy's binomial
    test at 1/2; ties counted as not lower: conservative against a claimed improvement)."""
    from scipy.stats import binomtest

    return float(binomtest(lower, n, 0.5).pvalue)


if __name__ == "__main__":
    main()
