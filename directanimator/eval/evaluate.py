"""`directanimator evaluate`: the paper's ten metrics for generated videos against ground truth.

Each PATH is one video or a folder of videos matched by file name (the reference may be one image
for all, or a folder of images matched by file stem). Ground truth is resized to the generated
size when they differ, and both are cut to the shorter length (both noted in the report).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..video import iter_frames, load_image
from .features import FeatureMetrics, feature_stats, frechet_distance
from .pixel import l1, psnr, ssim

VIDEO_EXT = {".mp4", ".mkv", ".mov", ".avi", ".webm"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
COLUMNS = ("FID", "SSIM", "PSNR", "LPIPS", "L1", "FIS", "FTS", "FVD", "PLC", "FLC")


def _videos(path: Path, what: str) -> dict[str, Path]:
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_file():
        return {path.stem: path}
    found = {p.stem: p for p in sorted(path.iterdir()) if p.suffix.lower() in VIDEO_EXT}
    if not found:
        raise InputError(f"no videos in {what} folder {path}")
    return found


def _match(gen: dict[str, Path], other: dict[str, Path], what: str) -> dict[str, Path]:
    if len(gen) == 1 and len(other) == 1:
        return {next(iter(gen)): next(iter(other.values()))}
    missing = sorted(set(gen) - set(other))
    if missing:
        raise InputError(f"no {what} video named like {missing[0]} (videos are matched by file name)")
    return {k: other[k] for k in gen}


def _read(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    frames = list(iter_frames(path))
    if not frames:
        raise InputError(f"video has no frames: {path}")
    if size is not None and frames[0].shape[:2] != size:
        frames = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack(frames)


def _references(reference: str | Path | None, names) -> dict[str, Path] | None:
    """Each generated video's reference image: one file for all, or a folder matched by file stem."""
    if not reference:
        return None
    r = Path(reference)
    if not r.exists():
        raise InputError(f"reference not found: {r}")
    if r.is_file():
        return {k: r for k in names}
    imgs = {p.stem: p for p in r.iterdir() if p.suffix.lower() in IMAGE_EXT}
    missing = sorted(set(names) - set(imgs))
    if missing:
        raise InputError(f"no reference image named like {missing[0]} in {r}")
    return {k: imgs[k] for k in names}


def _pair(name: str, generated: Path, truth: Path, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A generated video and its ground truth over their common frames, the truth resized to the
    generated size; what was done is noted."""
    g, t = _read(generated), _read(truth)
    if t.shape[1:3] != g.shape[1:3]:
        notes.append(f"{name}: ground truth {t.shape[2]} x {t.shape[1]} resized to the generated video's "
                     f"{g.shape[2]} x {g.shape[1]} before scoring")
        t = np.stack([cv2.resize(f, (g.shape[2], g.shape[1]), interpolation=cv2.INTER_AREA) for f in t])
    if len(g) != len(t):
        notes.append(f"{name}: {len(g)} generated vs {len(t)} ground-truth frames; compared the first "
                     f"{min(len(g), len(t))}")
    n = min(len(g), len(t))
    return g[:n], t[:n]


def _pose_row(generated: np.ndarray, driving: np.ndarray, dwpose: str | None) -> dict:
    """PLC of the generated video against the driving video (a fresh pose tracker for each)."""
    from .pose import COCO_TORSO, MEDIAPIPE_TORSO, DWPoseONNX, MediaPipePose, plc

    keypoints = []
    for video in (generated, driving):
        poser = DWPoseONNX(dwpose) if dwpose else MediaPipePose()
        keypoints.append([poser(f) for f in video])
        poser.close()
    return plc(keypoints[0], keypoints[1], COCO_TORSO if dwpose else MEDIAPIPE_TORSO, poser.name)


def _summary(per_video: dict, features: dict[str, tuple[list, list]], notes: list[str]) -> dict:
    """The mean of each column over the videos, and FID / FVD over all their frames / clips."""
    summary: dict = {}
    for col in COLUMNS:
        vals = [r[col] for r in per_video.values() if r.get(col) is not None]
        if vals:
            summary[col] = float(np.mean(vals))
    for name, unit in (("FID", "frames"), ("FVD", "16-frame clips")):
        gen_f, gt_f = features[name]
        if not gen_f:
            continue
        a, b = np.concatenate(gen_f), np.concatenate(gt_f)
        if len(a) < 2:
            notes.append(f"{name} needs at least 2 {unit} in all")
        else:
            summary[name] = frechet_distance(*feature_stats(a), *feature_stats(b))
    return summary


def _unavailable(features: FeatureMetrics, summary: dict, faces, refs, drv) -> dict[str, str]:
    """Each metric not in the summary, with the reason."""
    unavailable = features.missing()
    if faces is None:
        unavailable.update({k: "not computed (--no-face)" for k in ("FIS", "FTS", "FLC")})
    if refs is None:
        unavailable.setdefault("FIS", "needs --reference")
    if drv is None:
        unavailable.update({"PLC": "needs --driving", "FLC": "needs --driving"})
    for col in ("FIS", "FTS", "FLC", "PLC"):
        if col not in summary and col not in unavailable:
            unavailable[col] = "missing: no frame with a detection"
    return unavailable


def evaluate(generated: str | Path, ground_truth: str | Path, reference: str | Path | None = None,
             driving: str | Path | None = None, features: FeatureMetrics | None = None,
             face: bool = True, pose: bool = True, progress: bool = True, arcface: str | None = None,
             dwpose: str | None = None) -> dict:
    gen = _videos(Path(generated), "generated")
    gt = _match(gen, _videos(Path(ground_truth), "ground-truth"), "ground-truth")
    drv = _match(gen, _videos(Path(driving), "driving"), "driving") if driving else None
    refs = _references(reference, gen)
    features = features or FeatureMetrics()
    faces = None
    if face:
        from .face import DlibFaces

        faces = DlibFaces(arcface=arcface)
    per_video, notes = {}, []
    stacks: dict[str, tuple[list, list]] = {"FID": ([], []), "FVD": ([], [])}
    for name in tqdm(list(gen), desc="evaluate", unit="video", disable=not progress, leave=False):
        g, t = _pair(name, gen[name], gt[name], notes)
        n = len(g)
        row: dict = {"frames": n, "SSIM": ssim(g, t), "PSNR": psnr(g, t), "L1": l1(g, t)}
        if features.lpips is not None:
            row["LPIPS"] = features.lpips.frames(g, t)
        d = _read(drv[name], g.shape[1:3])[:n] if drv is not None else None
        if faces is not None:
            from .face import face_metrics

            ref_face = faces(load_image(refs[name])) if refs else None
            gen_faces = [faces(f) for f in g]
            drv_faces = [faces(f) for f in d] if d is not None else None
            row.update(face_metrics(gen_faces, ref_face, drv_faces, faces.name))
            if refs and ref_face is None:
                notes.append(f"{name}: no face found in the reference image; FIS missing")
        if pose and d is not None:
            row.update(_pose_row(g, d, dwpose))
        if features.inception is not None:
            stacks["FID"][0].append(features.inception.frames(g))
            stacks["FID"][1].append(features.inception.frames(t))
        if features.i3d is not None:
            stacks["FVD"][0].append(features.i3d.clips(g))
            stacks["FVD"][1].append(features.i3d.clips(t))
        per_video[name] = row
    summary = _summary(per_video, stacks, notes)
    unavailable = _unavailable(features, summary, faces, refs, drv)
    return {"videos": len(per_video), "summary": summary, "unavailable": unavailable, "notes": notes,
            "models": {"face": faces.name if faces else None,
                       "pose": (("DWPose ONNX" if dwpose else "MediaPipe Pose (not DWPose)")
                                if pose and drv is not None else None),
                       "fid": "Inception TorchScript" if features.inception else None,
                       "fvd": "I3D TorchScript" if features.i3d else None,
                       "lpips": "LPIPS v0.1 AlexNet" if features.lpips else None},
            "per_video": per_video}


def markdown_table(report: dict) -> str:
    """One row laid out like the paper's Tables 1-2 (L1 x 1e-4); '-' = unavailable or missing."""
    s = report["summary"]
    fmt = {"FID": "{:.2f}", "SSIM": "{:.3f}", "PSNR": "{:.2f}", "LPIPS": "{:.3f}", "L1": "{:.2f}", "FIS": "{:.3f}",
           "FTS": "{:.3f}", "FVD": "{:.2f}", "PLC": "{:.3f}", "FLC": "{:.3f}"}
    arrows = {"FID": "↓", "SSIM": "↑", "PSNR": "↑", "LPIPS": "↓", "L1": "(E-04) ↓", "FIS": "↑", "FTS": "↑",
              "FVD": "↓", "PLC": "↓", "FLC": "↓"}
    head = "| " + " | ".join(f"{c} {arrows[c]}" for c in COLUMNS) + " |"
    cells = []
    for c in COLUMNS:
        v = s.get(c)
        cells.append("-" if v is None else fmt[c].format(v * 1e4 if c == "L1" else v))
    return "\n".join([head, "|" + "---|" * len(COLUMNS), "| " + " | ".join(cells) + " |"])


def write_report(report: dict, out: str | Path) -> None:
    from ..storage import atomic_write_bytes

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(report, indent=1).encode())
