"""`directanimator synth`: write a puppet-world dataset in the on-disk format (data/format.py).

Splits hold out identities and motions: the last 20% of identities and of motions (at least one
each) appear only in the test split. Test clips come as cross-ID triples in cross_id_pairs.jsonl:
a reference clip of identity B (its first frame is the reference photo, B in B's scene and
placement), a driving clip of identity A != B performing motion M in A's scene, and the ground truth:
B performing M in B's scene at B's size, the answer an animation should give.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.format import ClipRecord, write_clip, write_manifest
from ..errors import InputError
from ..storage import atomic_output_dir, atomic_write_bytes
from ..video import save_image
from .render import Clip, render_clip


def annotations_of(clip: Clip) -> dict[str, np.ndarray]:
    return {"masks": clip.masks.astype(np.uint8), "face_boxes": clip.face_boxes, "keypoints": clip.keypoints,
            "face_landmarks": clip.face_landmarks}


def world_ids(identities: int, motions: int, seed: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """(train identities, test identities, train motions, test motions). Motion ids run in blocks of
    five consecutive ids, so every family appears as soon as there are five motions."""
    if identities < 2 or motions < 2:
        raise InputError("the puppet world needs at least 2 identities and 2 motions (one of each is held out)")
    ids = [seed * 100_000 + i for i in range(identities)]
    mids = [seed * 1_000 + i for i in range(motions)]
    ti, tm = max(1, round(0.2 * identities)), max(1, round(0.2 * motions))
    return ids[:-ti], ids[-ti:], mids[:-tm], mids[-tm:]


def build_world(out: str | Path, identities: int, motions: int, clips: int, frames: int, size: int, seed: int,
                fps: float = 15.0, preview: bool = False, overwrite: bool = False, progress: bool = True,
                reference_pose: str = "other_motion") -> list[ClipRecord]:
    """`reference_pose`: where a training clip's reference photo comes from. "other_motion": a photo
    of the clip's person in the clip's scene, in the first pose of another training motion, stored in
    the clip's annotations (reference_frame, reference_mask, reference_face_box, reference_keypoints),
    as a test triple's reference is; "own_frame": none stored, training takes one of the clip's own
    frames, whose pose is close to the clip's (experiments/reports/scaling.md: a model trained so
    learns to copy the reference instead of following the cues)."""
    if reference_pose not in ("other_motion", "own_frame"):
        raise InputError(f"--reference-pose must be other_motion or own_frame, got {reference_pose!r}")
    if clips < 1 or frames < 1:
        raise InputError("--clips and --frames must be at least 1")
    if not 64 <= size <= 512:
        raise InputError(f"--size must be between 64 and 512, got {size}")
    train_i, test_i, train_m, test_m = world_ids(identities, motions, seed)
    r = np.random.default_rng(seed)
    r_ref = np.random.default_rng([seed, 1])  # its own stream: the clips are the same either way
    n_test = max(1, clips // 5)
    n_train = max(1, clips - n_test)
    jobs: list[tuple[ClipRecord, int, int, int]] = []
    reference_motion: dict[str, int] = {}
    for k in range(n_train):
        i, m, s = int(r.choice(train_i)), int(r.choice(train_m)), int(r.integers(1 << 30))
        jobs.append((ClipRecord(f"train_{k:05d}", "train", fps, size, frames, i, m, s), i, m, s))
        if reference_pose == "other_motion":
            others = [x for x in train_m if x != m] or train_m
            reference_motion[jobs[-1][0].clip_id] = int(r_ref.choice(others))
    pairs = []
    for k in range(n_test):
        b = int(r.choice(test_i))
        others = [x for x in test_i if x != b] or [x for x in train_i + test_i if x != b]
        a = int(r.choice(others))
        m, m_ref = int(r.choice(test_m)), int(r.choice(test_m))
        scene_b, scene_a = int(r.integers(1 << 30)), int(r.integers(1 << 30))
        ref = ClipRecord(f"test_{k:05d}_reference", "test", fps, size, frames, b, m_ref, scene_b, role="reference")
        drv = ClipRecord(f"test_{k:05d}_driving", "test", fps, size, frames, a, m, scene_a, role="driving")
        gt = ClipRecord(f"test_{k:05d}_ground_truth", "test", fps, size, frames, b, m, scene_b, role="ground_truth",
                        source_clip=drv.clip_id)
        jobs += [(ref, b, m_ref, scene_b), (drv, a, m, scene_a), (gt, b, m, scene_b)]
        pairs.append({"reference": ref.clip_id, "driving": drv.clip_id, "ground_truth": gt.clip_id})
    records = []
    with atomic_output_dir(out, overwrite=overwrite, known=("manifest.jsonl", "cross_id_pairs.jsonl", "world.json",
                                                            "clips", "contact_sheet.png", "pseudo", "cache")) as tmp:
        for record, i, m, s in tqdm(jobs, desc="synth", unit="clip", disable=not progress, leave=False):
            clip = render_clip(i, m, s, frames, size, fps)
            annotations = annotations_of(clip)
            if record.clip_id in reference_motion:
                photo = render_clip(i, reference_motion[record.clip_id], s, 1, size, fps)
                annotations.update(reference_frame=photo.frames[0], reference_mask=photo.masks[0].astype(np.uint8),
                                   reference_face_box=photo.face_boxes[0], reference_keypoints=photo.keypoints[0])
            write_clip(tmp, record, clip.frames, annotations)
            records.append(record)
        write_manifest(tmp, records)
        atomic_write_bytes(tmp / "cross_id_pairs.jsonl", "".join(json.dumps(p) + "\n" for p in pairs).encode())
        info = {"identities": {"train": train_i, "test": test_i}, "motions": {"train": train_m, "test": test_m},
                "clips": clips, "frames": frames, "size": size, "seed": seed, "fps": fps,
                "reference_pose": reference_pose}
        atomic_write_bytes(tmp / "world.json", json.dumps(info, indent=1).encode())
        if preview:
            save_image(tmp / "contact_sheet.png", contact_sheet(train_i + test_i, train_m + test_m, size=96))
    return records


def contact_sheet(identities: list[int], motions: list[int], size: int = 96, max_n: int = 8) -> np.ndarray:
    """Identities (rows) x motions (columns), each in the identity's own scene, at mid-motion."""
    rows = []
    for i in identities[:max_n]:
        row = []
        for m in motions[:max_n]:
            clip = render_clip(i, m, i, 1, size, start=0.6)
            tile = clip.frames[0].copy()
            cv2.rectangle(tile, (0, 0), (size - 1, size - 1), (0, 0, 0), 1)
            row.append(tile)
        rows.append(np.hstack(row))
    return np.vstack(rows)
