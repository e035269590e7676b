"""The on-disk dataset format, shared by the puppet world and real clips.

    DATASET/
      manifest.jsonl           one JSON object per clip (see ClipRecord)
      cross_id_pairs.jsonl     test triples: reference clip, driving clip, ground-truth clip (puppet world)
      clips/<clip_id>/
        video.mp4              H.264, the clip's frames
        annotations.safetensors
            masks           (T, H, W) uint8  person mask, 0/1
            face_boxes      (T, 4)    float32 x0, y0, x1, y1 in pixels; NaN rows = no face
            keypoints       (T, 17, 3) float32 COCO-17 x, y, visibility (2 visible, 1 occluded, 0 out)
            face_landmarks  (T, 68, 2) float32 iBUG-68 layout; NaN = not visible
        meta.json              the ClipRecord plus anything specific to the clip (e.g. how it was made)

A real clip needs only `video.mp4` and its manifest line; annotations are optional (cues are then
extracted with the embedded models instead of `GivenMasks`, which see the clip at its own resolution).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from ..errors import InputError
from ..storage import atomic_write, atomic_write_bytes
from ..video import VideoWriter

SPLITS = ("train", "test")


@dataclass
class ClipRecord:
    clip_id: str
    split: str
    fps: float
    size: int
    num_frames: int
    identity_id: int | None = None
    motion_id: int | None = None
    scene_id: int | None = None
    role: str = "clip"   # clip | reference | driving | ground_truth | pseudo
    source_clip: str | None = None  # for pseudo clips and ground truth: the clip whose motion they copy
    extra: dict = field(default_factory=dict)


def write_clip(root: Path, record: ClipRecord, frames: np.ndarray, annotations: dict[str, np.ndarray]) -> None:
    """Write one clip folder (frames (T, H, W, 3) uint8 RGB) under root/clips/."""
    folder = Path(root) / "clips" / record.clip_id
    folder.mkdir(parents=True, exist_ok=True)
    def video(tmp: Path) -> None:
        with VideoWriter(tmp, record.fps, frames.shape[2], frames.shape[1], crf=16, preset="medium") as w:
            for f in frames:
                w.write(f)

    atomic_write(folder / "video.mp4", video)
    atomic_write(folder / "annotations.safetensors",
                 lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in annotations.items()}, str(tmp)))
    atomic_write_bytes(folder / "meta.json", json.dumps(asdict(record), indent=1, sort_keys=True).encode())


def write_manifest(root: Path, records: list[ClipRecord]) -> None:
    lines = "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in records)
    atomic_write_bytes(Path(root) / "manifest.jsonl", lines.encode())


def read_manifest(root: str | Path) -> list[ClipRecord]:
    path = Path(root) / "manifest.jsonl"
    if not path.is_file():
        raise InputError(f"not a dataset: {path} is missing")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ClipRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"{path}:{n}: bad manifest line ({exc})") from None
    return records


def clip_dir(root: str | Path, clip_id: str) -> Path:
    return Path(root) / "clips" / clip_id


def read_annotations(root: str | Path, clip_id: str) -> dict[str, np.ndarray]:
    path = clip_dir(root, clip_id) / "annotations.safetensors"
    if not path.is_file():
        raise InputError(f"clip {clip_id} has no annotations ({path})")
    return load_file(str(path))


def read_pseudo_manifest(dataset: str | Path, kept_only: bool = True, split: str | None = None) -> list[dict]:
    """The pseudo clips' lines (those the filter kept, unless `kept_only` is off), of source clips of
    `split` when given (a line without a split is a training clip's)."""
    path = Path(dataset) / "pseudo" / "manifest.jsonl"
    if not path.is_file():
        raise InputError(f"no pseudo clips: {path} is missing (run `directanimator pseudo --dataset {dataset}` first)")
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [x for x in items if (x["kept"] or not kept_only) and split in (None, x.get("split", "train"))]
