"""Evaluate a pipeline on the puppet world's held-out cross-ID triples, against the true answer.

Each triple (cross_id_pairs.jsonl): the reference photo is the first frame of a clip of identity B,
the driving clip shows identity A != B doing motion M, and the ground truth is B doing M in B's
scene. Both identities and the motion are held out of training. Cues use the world's ground-truth
masks and face boxes (MediaPipe finds no face on cartoons).

Metrics per triple: SSIM, PSNR, L1 (eval/pixel.py) over all frames; person PSNR: PSNR over the
pixels of the ground truth's person mask (dilated by 2 px), the region the animation has to get right
(the whole-frame metrics are dominated by the static background, where holding the reference photo
still already scores well); and face PSNR: PSNR inside the ground truth's face boxes (a puppet-world
stand-in for the face identity metrics, which need a face recogniser that works on cartoons); moving
PSNR: PSNR over the region that moves, the union of the true person masks and the reference's mask
(a still photo is wrong there by construction); motion IoU: whether the answer moves where the truth
moves (`motion_iou`: the still photo scores 0, a perfect answer 1).

A number means nothing without the trivial answers next to it: `trivial_answers` gives three on the
same triple, evaluated with the same metrics:
  still        the reference photo held still
  pasted       the driving video as it is (right motion, wrong person and scene)
  silhouette   the reference background (its person painted over with the background's mean colour)
               with the driving masks, aligned to the reference by eqs 9-12, filled with the reference
               person's mean colour
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..cues.detectors import Detectors
from ..cues.location import estimate_alignment, tight_box, warp_mask
from ..data.format import clip_dir, read_annotations
from ..video import iter_frames
from .pixel import l1, psnr, ssim


def face_psnr(generated: np.ndarray, truth: np.ndarray, boxes: np.ndarray) -> float | None:
    errs = []
    for g, t, b in zip(generated, truth, boxes):
        if not np.isfinite(b).all():
            continue
        x0, y0, x1, y1 = np.clip(np.round(b).astype(int), 0, [g.shape[1], g.shape[0]] * 2)
        if x1 <= x0 or y1 <= y0:
            continue
        errs.append(((g[y0:y1, x0:x1].astype(np.float64) - t[y0:y1, x0:x1]) / 255.0) ** 2)
    if not errs:
        return None
    mse = float(np.mean([e.mean() for e in errs]))
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def _dilate(masks: np.ndarray) -> np.ndarray:
    import cv2

    kernel = np.ones((5, 5), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])


def region_psnr(generated: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float | None:
    """PSNR over the pixels where `region` (T, H, W) is true."""
    if not region.any():
        return None
    diff = (generated.astype(np.float64) - truth) / 255.0
    mse = float((diff ** 2)[region].mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


def moving_region(truth_masks: np.ndarray, reference_mask: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: each true person mask united with the reference's mask, dilated by 2 px."""
    union = truth_masks.astype(bool) | reference_mask.astype(bool)[None]
    return _dilate(union)


MOTION_LEVELS = 40  # a pixel has moved where it differs from the reference photo by more, in some channel


def moved(video: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: where each frame differs from the reference photo by more than MOTION_LEVELS."""
    return (np.abs(video.astype(np.int16) - reference.astype(np.int16)[None]) > MOTION_LEVELS).any(axis=-1)


def motion_iou(generated: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> float | None:
    """Does the answer move where the truth moves: the pixels that differ from the reference photo
    (`moved`) in the answer and in the truth, intersection over union summed over all frames. The
    still photo scores 0, a perfect answer 1; None when the truth never moves."""
    a, t = moved(generated, reference), moved(truth, reference)
    union = int((a | t).sum())
    return float((a & t).sum() / union) if union else None


def puppet_metrics(generated: np.ndarray, truth: np.ndarray, truth_masks: np.ndarray,
                   reference_mask: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float | None]:
    """The metrics every puppet table shows (uint8 (T, H, W, 3) frames, (T, H, W) masks); with the
    reference photo, also `motion_iou`."""
    out = {"ssim": ssim(generated, truth), "psnr": psnr(generated, truth),
           "person_psnr": region_psnr(generated, truth, _dilate(truth_masks)),
           "moving_psnr": region_psnr(generated, truth, moving_region(truth_masks, reference_mask))}
    if reference is not None:
        out["motion_iou"] = motion_iou(generated, truth, reference)
    return out


def aligned_masks(driving_masks: np.ndarray, reference_mask: np.ndarray) -> np.ndarray:
    """The driving masks moved onto the reference person by eqs 9-12 (as the Location Cue), 0/1."""
    alignment = estimate_alignment(tight_box(reference_mask), [tight_box(m) for m in driving_masks])
    return np.stack([warp_mask(m.astype(np.float32), alignment) >= 0.5 for m in driving_masks])


def trivial_answers(reference: np.ndarray, reference_mask: np.ndarray, driving: np.ndarray,
                    driving_masks: np.ndarray) -> dict[str, np.ndarray]:
    """{'still', 'pasted', 'silhouette'}: (T, H, W, 3) uint8 videos (see the module docstring)."""
    t = len(driving)
    ref_mask = reference_mask.astype(bool)
    still = np.repeat(reference[None], t, axis=0)
    background = reference.copy()
    outside = ~ref_mask
    if outside.any():
        background[ref_mask] = reference[outside].reshape(-1, 3).mean(0).round().astype(np.uint8)
    person = (reference[ref_mask].reshape(-1, 3).mean(0) if ref_mask.any() else reference.reshape(-1, 3).mean(0))
    fill = np.repeat(background[None], t, axis=0)
    fill[aligned_masks(driving_masks, ref_mask)] = person.round().astype(np.uint8)
    return {"still": still, "pasted": np.ascontiguousarray(driving), "silhouette": fill}


TRIVIAL_NAMES = {"still": "reference photo held still", "pasted": "driving video pasted as it is",
                 "silhouette": "silhouette fill (aligned mask, mean colour)"}


def evaluate_triples(pipe, dataset: str | Path, limit: int | None = None, steps: int | None = None,
                     seed: int = 0, baselines: bool = True) -> dict:
    """The pipeline (None: only the trivial answers) on the first `limit` triples. Returns
    {'mean': model means, 'baselines': {name: means}, 'triples': per-triple rows,
    'baseline_triples': {name: per-triple rows}}."""
    dataset = Path(dataset)
    triples = [json.loads(x) for x in (dataset / "cross_id_pairs.jsonl").read_text().splitlines() if x.strip()]
    triples = triples[:limit] if limit else triples
    rows: list[dict] = []
    base_rows: dict[str, list[dict]] = {k: [] for k in TRIVIAL_NAMES} if baselines else {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, tr in enumerate(triples):
            reference = next(iter_frames(clip_dir(dataset, tr["reference"]) / "video.mp4"))
            ref_ann = read_annotations(dataset, tr["reference"])
            drv_ann = read_annotations(dataset, tr["driving"])
            gt_ann = read_annotations(dataset, tr["ground_truth"])
            truth = np.stack(list(iter_frames(clip_dir(dataset, tr["ground_truth"]) / "video.mp4")))
            ref_mask = ref_ann["masks"][0].astype(bool)
            if pipe is not None:
                out = Path(tmp) / f"{k}.mp4"
                pipe(reference, clip_dir(dataset, tr["driving"]) / "video.mp4", out, steps=steps, seed=seed,
                     progress=False, **Detectors.from_annotations(
                         drv_ann, ref_ann, skeleton_errors=pipe.config.cues.pose.skeleton_errors).kwargs())
                rows.append({"triple": k, **_all_metrics(np.stack(list(iter_frames(out))), truth, gt_ann, ref_mask,
                                                         reference)})
            if baselines:
                driving = np.stack(list(iter_frames(clip_dir(dataset, tr["driving"]) / "video.mp4")))
                n = min(len(driving), len(truth))
                answers = trivial_answers(reference, ref_mask, driving[:n], drv_ann["masks"][:n])
                for name, video in answers.items():
                    base_rows[name].append({"triple": k, **_all_metrics(video, truth, gt_ann, ref_mask, reference)})
    return {"mean": mean_metrics(rows) if rows else None,
            "baselines": {k: mean_metrics(v) for k, v in base_rows.items()}, "triples": rows,
            "baseline_triples": base_rows}


METRIC_KEYS = ("ssim", "psnr", "person_psnr", "moving_psnr", "motion_iou", "l1", "face_psnr")


def _all_metrics(video: np.ndarray, truth: np.ndarray, truth_ann: dict, reference_mask: np.ndarray,
                 reference: np.ndarray) -> dict:
    """The puppet metrics, L1 and face PSNR of a video against the truth (over their common frames)."""
    n = min(len(video), len(truth))
    video, truth = video[:n], truth[:n]
    return {**puppet_metrics(video, truth, truth_ann["masks"][:n], reference_mask, reference), "l1": l1(video, truth),
            "face_psnr": face_psnr(video, truth, truth_ann["face_boxes"][:n])}


def mean_metrics(rows: list[dict], keys: tuple[str, ...] = METRIC_KEYS) -> dict[str, float | None]:
    """Per key, the mean over the rows that have a value (None when none has)."""
    out = {}
    for key in keys:
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def markdown_table(model_rows: dict[str, dict], baselines: dict[str, dict]) -> list[str]:
    """A table of model rows and the three trivial answers, the four main metrics first, then motion
    IoU (does the answer move where the truth moves: the still photo 0, a perfect answer 1)."""
    lines = ["| | SSIM ↑ | PSNR ↑ | person PSNR ↑ | moving-region PSNR ↑ | face PSNR ↑ | motion IoU ↑ |",
             "|---|---|---|---|---|---|---|"]

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    for name, m in [*((f"trivial: {TRIVIAL_NAMES[k]}", v) for k, v in baselines.items()), *model_rows.items()]:
        lines.append(f"| {name} | {fmt(m['ssim'], '.3f')} | {fmt(m['psnr'], '.2f')} | {fmt(m['person_psnr'], '.2f')} | "
                     f"{fmt(m['moving_psnr'], '.2f')} | {fmt(m.get('face_psnr'), '.2f')} | {fmt(m.get('motion_iou'), '.3f')} |")
    return lines
