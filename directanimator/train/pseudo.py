"""Pseudo cross-ID driving clips for the Same2X cross-ID stage (paper 3.2, A.3), and the automated
quality filter the paper names as future work (it filters by hand).

A pseudo clip shows another identity performing a training clip's motion. Generators (the
`PseudoGenerator` protocol):
  puppet          the puppet world re-renders the motion exactly with another identity and scene,
                  then degrades it like an imperfect animator would (synth/pseudo.py)
  external        videos made by any other animator (StableAnimator, MimicMotion, ...), listed in a
                  JSONL manifest: {"source_clip": ID, "video": PATH}
  directanimator  bootstrap: a same-ID checkpoint animates other reference images with the clip

Filter scores (each in [0, 1] except flicker; thresholds in `pseudo.filter`):
  mask_iou            mean IoU of the pseudo and source silhouettes after aligning the pseudo's to
                      the source's with eqs 9-10 (scale and translation, shared by all frames);
                      ground-truth masks when both clips carry them, MediaPipe for both otherwise
  pose_consistency    1 - 2 d, d = mean distance of box-normalised COCO keypoints (visible in both),
                      when both clips carry keypoints; otherwise equal to mask_iou
  face_presence       frames with a face in the pseudo / frames with a face in the source
  expression          Pearson correlation of the mouth opening (iBUG 62-66 distance / face height)
                      when both carry 68 landmarks; None (not checked) otherwise
  flicker             mean |f(t+1) - 2 f(t) + f(t-1)| of the pseudo / the same for the source
  pose_jitter         the second difference over time of (pseudo - source) box-normalised keypoints:
                      a pseudo animator's frame-to-frame pose noise, with the shared motion and the
                      identities' body proportions cancelled (None without keypoints)
  identity_leak       how far the pseudo person's colours moved from its own reference photo towards
                      the source person's (0 = its own look, 1 = the source's; the projection of the
                      part-wise mean colours, `_leak`); None when the pseudo clip's reference photo
                      and its mask are unknown (external videos without them)

The thresholds are calibrated on the puppet world, where every degradation's strength is known
(experiments/pseudo_filter.py, report in experiments/reports/pseudo_filter.md).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from ..config import Config, PseudoFilterConfig
from ..data.cache import ClipFrames, load_clip_frames
from ..data.format import ClipRecord, clip_dir, read_manifest, read_pseudo_manifest, write_clip  # noqa: F401
from ..errors import InputError
from ..storage import atomic_output_dir, atomic_write_bytes


class PseudoGenerator(Protocol):
    name: str

    def generate(self, source: ClipRecord, index: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict] | None:
        """The `index`-th pseudo clip of `source`: frames (T, H, W, 3) uint8, annotations (may be
        empty) and a description; None when this generator has no such clip."""
        ...


class PuppetPseudo:
    name = "puppet"

    def __init__(self, dataset: Path, cfg: Config):
        world = json.loads((dataset / "world.json").read_text()) if (dataset / "world.json").is_file() else None
        if world is None:
            raise InputError(f"{dataset} is not a puppet-world dataset (world.json missing): use the external generator")
        self.pool = list(world["identities"]["train"])
        self.cfg = cfg.pseudo

    def generate(self, source: ClipRecord, index: int):
        from ..synth.pseudo import Degradation, render_pseudo
        from ..synth.world import annotations_of

        if source.identity_id is None or source.motion_id is None:
            raise InputError(f"clip {source.clip_id} has no identity/motion ids: not a puppet-world clip")
        r = np.random.default_rng([zlib.crc32(source.clip_id.encode()), index, self.cfg.seed])
        others = [i for i in self.pool if i != source.identity_id]
        if not others:
            raise InputError("the pseudo reference pool needs identities other than the source's")
        identity = int(r.choice(others))
        scene = int(r.integers(1 << 30))
        c = self.cfg
        deg = Degradation(blur=float(r.uniform(0, c.max_blur)), colour_drift=float(r.uniform(0, c.max_colour_drift)),
                          pose_jitter=float(r.uniform(0, c.max_pose_jitter)),
                          identity_leak=float(r.uniform(0, c.max_identity_leak)))
        clip = render_pseudo(source.identity_id, source.motion_id, identity, scene, source.num_frames, source.size,
                             source.fps, deg)
        ref = pseudo_reference(identity, source.motion_id, scene, source.size, source.fps)
        ann = {**annotations_of(clip), "reference_image": ref.frames[0], "reference_mask": ref.masks[0].astype(np.uint8)}
        return clip.frames, ann, {"reference_identity": identity, "scene": scene, "degradation": asdict(deg)}


def pseudo_reference(identity: int, motion: int, scene: int, size: int, fps: float):
    """The reference photo a pseudo clip was animated from: its identity in its scene, first frame."""
    from ..synth.render import render_clip

    return render_clip(identity, motion, scene, 1, size, fps)


class ExternalPseudo:
    """Pseudo clips from a JSONL manifest: {"source_clip": ID, "video": PATH}, several per clip allowed."""

    name = "external"

    def __init__(self, manifest: str | Path):
        path = Path(manifest)
        if not path.is_file():
            raise InputError(f"external pseudo manifest not found: {path}")
        self.by_source: dict[str, list[Path]] = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                video = Path(item["video"])
                self.by_source.setdefault(item["source_clip"], []).append(video if video.is_absolute()
                                                                           else path.parent / video)
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{path}:{n}: expected {{\"source_clip\": ..., \"video\": ...}}") from None

    def generate(self, source: ClipRecord, index: int):
        from ..video import iter_frames

        videos = self.by_source.get(source.clip_id, [])
        if index >= len(videos):
            return None
        if not videos[index].is_file():
            raise InputError(f"external pseudo video not found: {videos[index]}")
        frames = np.stack(list(iter_frames(videos[index])))
        return frames, {}, {"video": str(videos[index])}


# ----------------------------------------------------------------------------- quality filter


def _silhouettes(clip: ClipFrames, given: bool = True) -> np.ndarray:
    if given and clip.masks is not None:
        return clip.masks > 0.5
    from ..cues.segment import MediaPipeSegmenter, SubjectTracker

    seg = MediaPipeSegmenter(0)
    try:
        tracker = SubjectTracker(seg, 0.5, int(0.0005 * clip.frames.shape[1] ** 2))
        return np.stack([tracker(f, i)[1] for i, f in enumerate(clip.frames)])
    finally:
        seg.close()


def _faces(clip: ClipFrames, given: bool = True) -> np.ndarray:
    """(T,) bool: a face in the frame."""
    if given and clip.face_boxes is not None:
        return np.isfinite(clip.face_boxes).all(axis=1)
    from ..cues.face import MediaPipeFaceDetector

    det = MediaPipeFaceDetector(1, 0.5)
    try:
        return np.array([bool(det.detect(f)) for f in clip.frames])
    finally:
        det.close()


def _mask_iou(src: np.ndarray, pse: np.ndarray) -> float:
    from ..cues.location import estimate_alignment, tight_box, warp_mask

    src_boxes = [tight_box(m) for m in src]
    pse_boxes = [tight_box(m) for m in pse]
    valid = [b for b in src_boxes if b is not None]
    if not valid or all(b is None for b in pse_boxes):
        return 0.0
    # align the pseudo silhouettes onto the source's (eqs 9-10 with the source's median box as "reference")
    ref_box = np.median(np.stack(valid), axis=0)
    align = estimate_alignment(ref_box, pse_boxes)
    ious = []
    for s, p in zip(src, pse):
        w = warp_mask(p.astype(np.float32), align) > 0.5
        union = np.logical_or(s, w).sum()
        ious.append(np.logical_and(s, w).sum() / union if union else 1.0)
    return float(np.mean(ious))


def _pose_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean distance of COCO keypoints (T, 17, 3) after each frame's visible points are centred and
    divided by their bounding-box height."""
    ds = []
    for ka, kb in zip(a, b):
        vis = (ka[:, 2] > 0) & (kb[:, 2] > 0)
        if vis.sum() < 3:
            continue

        def norm(k):
            p = k[vis, :2]
            h = max(p[:, 1].max() - p[:, 1].min(), 1e-3)
            return (p - p.mean(axis=0)) / h

        ds.append(float(np.linalg.norm(norm(ka) - norm(kb), axis=1).mean()))
    return float(np.mean(ds)) if ds else None


def _keypoint_jitter(a: np.ndarray, b: np.ndarray) -> float | None:
    """Frame-to-frame pose noise of clip b against clip a doing the same motion (keypoints
    (T, 17, 3)): d(t) = normalised b - normalised a (each frame centred on its visible points and
    divided by their height); the mean |d(t+1) - 2 d(t) + d(t-1)| over points visible in both clips
    in all three frames. The shared motion and constant body-proportion offsets cancel; jitter
    does not."""
    if len(a) < 3:
        return None

    def norm(k):
        out = np.full(k.shape[:2] + (2,), np.nan)
        for t, f in enumerate(k):
            vis = f[:, 2] > 0
            if vis.sum() >= 3:
                p = f[vis, :2].astype(np.float64)
                out[t, vis] = (p - p.mean(0)) / max(np.ptp(p[:, 1]), 1e-3)
        return out

    d = norm(b) - norm(a)
    second = np.linalg.norm(d[2:] - 2 * d[1:-1] + d[:-2], axis=-1)
    second = second[np.isfinite(second)]
    return float(second.mean()) if len(second) else None


def _mouth_signal(lm: np.ndarray) -> np.ndarray:
    opening = np.linalg.norm(lm[:, 66] - lm[:, 62], axis=1)
    height = lm[:, :, 1].max(axis=1) - lm[:, :, 1].min(axis=1)
    return opening / np.maximum(height, 1e-3)


def _part_colours(frames: np.ndarray, masks: np.ndarray) -> np.ndarray | None:
    """Mean RGB of the person's upper (top 55% of its box) and lower part, averaged over frames: (6,)."""
    rows = []
    for f, m in zip(frames, masks):
        ys, xs = np.nonzero(m)
        if len(ys) < 8:
            continue
        cut = ys.min() + 0.55 * (ys.max() - ys.min())
        upper, lower = ys <= cut, ys > cut
        if not upper.any() or not lower.any():
            continue
        px = f[ys, xs].astype(np.float64)
        rows.append(np.concatenate([px[upper].mean(0), px[lower].mean(0)]))
    return np.mean(rows, axis=0) if rows else None


def _leak(source: ClipFrames, src_masks: np.ndarray, pseudo: ClipFrames, pse_masks: np.ndarray,
          reference: np.ndarray, reference_mask: np.ndarray) -> float | None:
    """Projection of (pseudo - reference) onto (source - reference) in part-colour space, in [0, 1]."""
    c_s = _part_colours(source.frames, src_masks)
    c_p = _part_colours(pseudo.frames, pse_masks)
    c_r = _part_colours(reference[None], reference_mask[None] > 0)
    if c_s is None or c_p is None or c_r is None:
        return None
    d = c_s - c_r
    if float(d @ d) < 1e-6:
        return None  # the two identities look alike: a leak cannot be told apart
    return float(np.clip((c_p - c_r) @ d / (d @ d), 0.0, 1.0))


def _flicker(frames: np.ndarray) -> float:
    """Mean |f(t+1) - 2 f(t) + f(t-1)|: steady motion and slow colour drift cancel, frame-to-frame
    jumps (flicker, dropped or shuffled frames) do not."""
    if len(frames) < 3:
        return 0.0
    f = frames.astype(np.float32)
    return float(np.abs(f[2:] - 2 * f[1:-1] + f[:-2]).mean())


@dataclass
class FilterResult:
    scores: dict
    kept: bool
    reasons: list[str]


def score_pseudo(source: ClipFrames, pseudo: ClipFrames, thresholds: PseudoFilterConfig,
                 reference: np.ndarray | None = None, reference_mask: np.ndarray | None = None) -> FilterResult:
    """Scores of a pseudo clip against its source (module docstring); `reference` / `reference_mask`
    are the photo the pseudo clip was animated from, when known (for identity_leak)."""
    n = min(len(source.frames), len(pseudo.frames))
    # both clips are measured the same way: ground truth only when both carry it
    both_masks = source.masks is not None and pseudo.masks is not None
    src_m, pse_m = _silhouettes(source, both_masks)[:n], _silhouettes(pseudo, both_masks)[:n]
    scores: dict = {"mask_iou": round(_mask_iou(src_m, pse_m), 4)}
    d = None
    if source.keypoints is not None and pseudo.keypoints is not None:
        d = _pose_distance(source.keypoints[:n], pseudo.keypoints[:n])
    scores["pose_consistency"] = round(max(0.0, 1 - 2 * d), 4) if d is not None else scores["mask_iou"]
    jitter = None
    if source.keypoints is not None and pseudo.keypoints is not None:
        jitter = _keypoint_jitter(source.keypoints[:n], pseudo.keypoints[:n])
    scores["pose_jitter"] = None if jitter is None else round(jitter, 4)
    both_faces = source.face_boxes is not None and pseudo.face_boxes is not None
    src_f, pse_f = _faces(source, both_faces)[:n], _faces(pseudo, both_faces)[:n]
    scores["face_presence"] = round(float(min(1.0, pse_f.sum() / src_f.sum())) if src_f.sum() else 1.0, 4)
    expr = None
    if source.face_landmarks is not None and pseudo.face_landmarks is not None:
        ok = np.isfinite(source.face_landmarks[:n]).all(axis=(1, 2)) & np.isfinite(pseudo.face_landmarks[:n]).all(axis=(1, 2))
        if ok.sum() >= 3:
            a, b = _mouth_signal(source.face_landmarks[:n][ok]), _mouth_signal(pseudo.face_landmarks[:n][ok])
            if a.std() < 1e-6 or b.std() < 1e-6:
                expr = 1.0 if (a.std() < 1e-6 and b.std() < 1e-6) else 0.0
            else:
                expr = float(np.corrcoef(a, b)[0, 1])
    scores["expression"] = None if expr is None else round(expr, 4)
    scores["flicker"] = round(_flicker(pseudo.frames[:n]) / max(_flicker(source.frames[:n]), 1e-3), 4)
    leak = None
    if reference is not None and reference_mask is not None:
        leak = _leak(source, src_m, pseudo, pse_m, reference, reference_mask)
    scores["identity_leak"] = None if leak is None else round(leak, 4)
    reasons = []
    t = thresholds
    if scores["mask_iou"] < t.min_mask_iou:
        reasons.append(f"mask_iou {scores['mask_iou']:.2f} < {t.min_mask_iou}")
    if scores["pose_consistency"] < t.min_pose_consistency:
        reasons.append(f"pose_consistency {scores['pose_consistency']:.2f} < {t.min_pose_consistency}")
    if scores["face_presence"] < t.min_face_presence:
        reasons.append(f"face_presence {scores['face_presence']:.2f} < {t.min_face_presence}")
    if expr is not None and t.min_expression_consistency > 0 and expr < t.min_expression_consistency:
        reasons.append(f"expression {expr:.2f} < {t.min_expression_consistency}")
    if scores["flicker"] > t.max_flicker:
        reasons.append(f"flicker {scores['flicker']:.2f} > {t.max_flicker}")
    if jitter is not None and jitter > t.max_pose_jitter:
        reasons.append(f"pose_jitter {jitter:.2f} > {t.max_pose_jitter}")
    if leak is not None and leak > t.max_identity_leak:
        reasons.append(f"identity_leak {leak:.2f} > {t.max_identity_leak}")
    return FilterResult(scores, not reasons, reasons)


# ----------------------------------------------------------------------------- the job


def make_generator(dataset: Path, cfg: Config) -> PseudoGenerator:
    g = cfg.pseudo.generator
    if g == "puppet":
        return PuppetPseudo(dataset, cfg)
    if g == "external":
        if not cfg.pseudo.external_manifest:
            raise InputError("pseudo.generator is external but pseudo.external_manifest is not set")
        return ExternalPseudo(cfg.pseudo.external_manifest)
    from .bootstrap import DirectAnimatorPseudo

    return DirectAnimatorPseudo(dataset, cfg)


def make_pseudo(dataset: str | Path, cfg: Config, overwrite: bool = False, progress: bool = True,
                generator: PseudoGenerator | None = None, splits: tuple[str, ...] = ("train",)) -> dict:
    """Write DATASET/pseudo/ (clips, manifest.jsonl, filter_report.json); returns the report.

    `splits` names the clips to drive: the training clips feed the cross-ID stage; the test clips'
    pseudo clips are the driving videos of `benchmark --cross-id` (each line records its split, and
    training reads only the training ones)."""
    dataset = Path(dataset)
    unknown = sorted(set(splits) - {"train", "test"})
    if unknown or not splits:
        raise InputError(f"pseudo splits must be train and/or test, not {', '.join(unknown) or 'none'}")
    records = [r for r in read_manifest(dataset) if r.split in splits and r.role == "clip"]
    if not records:
        raise InputError(f"{dataset}: no {' or '.join(splits)} clips in the manifest")
    gen = generator or make_generator(dataset, cfg)
    c = cfg.pseudo
    if not 0 <= c.min_per_clip <= c.max_per_clip:
        raise InputError("pseudo.min_per_clip must be between 0 and pseudo.max_per_clip")
    lines, kept, dropped, reasons_count = [], 0, 0, {}
    with atomic_output_dir(dataset / "pseudo", overwrite=overwrite,
                           known=("manifest.jsonl", "filter_report.json", "clips")) as tmp:
        for rec in tqdm(records, desc="pseudo", unit="clip", disable=not progress, leave=False):
            r = np.random.default_rng([zlib.crc32(rec.clip_id.encode()), c.seed])
            count = int(r.integers(c.min_per_clip, c.max_per_clip + 1))
            if gen.name == "external":
                count = len(getattr(gen, "by_source", {}).get(rec.clip_id, []))
            source = None
            for k in range(count):
                made = gen.generate(rec, k)
                if made is None:
                    break
                frames, ann, info = made
                pid = f"{rec.clip_id}_p{k}"
                prec = ClipRecord(pid, rec.split, rec.fps, int(frames.shape[1]), int(len(frames)), role="pseudo",
                                  source_clip=rec.clip_id, extra={"generator": gen.name, **info})
                write_clip(tmp, prec, frames, ann)
                if source is None:
                    source = load_clip_frames(clip_dir(dataset, rec.clip_id), rec.size)
                pseudo = load_clip_frames(clip_dir(tmp, pid), rec.size)
                res = score_pseudo(source, pseudo, c.filter, ann.get("reference_image"), ann.get("reference_mask"))
                kept += res.kept
                dropped += not res.kept
                for reason in res.reasons:
                    name = reason.split()[0]
                    reasons_count[name] = reasons_count.get(name, 0) + 1
                lines.append({"pseudo_id": pid, "source_clip": rec.clip_id, "split": rec.split, "generator": gen.name, **info,
                              "scores": res.scores, "kept": res.kept, "reasons": res.reasons})
        atomic_write_bytes(tmp / "manifest.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())
        report = {"generator": gen.name, "splits": list(splits), "source_clips": len(records), "pseudo_clips": len(lines), "kept": kept,
                  "dropped": dropped, "dropped_by": reasons_count, "thresholds": asdict(c.filter)}
        atomic_write_bytes(tmp / "filter_report.json", json.dumps(report, indent=1).encode())
    return report
