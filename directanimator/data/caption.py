"""`directanimator caption DATA --model PATH`: a caption for every clip of a dataset.

Each clip gets `model.text.caption_frames` frames spread over it, captioned in batches by a Qwen2-VL
or Qwen2.5-VL model from a local folder (model/captioner.py) with `model.text.caption_prompt`. The
caption is stored with the clip (clips/<id>/caption.txt, written under a temporary name) and in its
manifest line (`extra.caption`); a clip that has one is skipped, so a stopped job resumes. `preprocess`
then encodes each caption with T5 into the clip's cache, and training uses it instead of the fixed
prompt.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import Config
from ..storage import atomic_write_bytes
from ..video import iter_frames
from .cache import CAPTION_FILE, read_caption
from .format import clip_dir, read_manifest, write_manifest


def spread_frames(video: Path, count: int) -> list[np.ndarray]:
    """`count` frames evenly spread over the video (first and last included), read in one pass."""
    from ..video import probe_video

    n = max(1, probe_video(video).num_frames or 1)
    wanted = set(np.linspace(0, n - 1, max(1, count)).round().astype(int).tolist())
    frames = [f for i, f in enumerate(iter_frames(video)) if i in wanted]
    if not frames:
        raise ValueError(f"no frames in {video}")
    return frames


def caption_dataset(dataset: str | Path, cfg: Config, model: str | Path | None, device: str = "cpu",
                    dtype: torch.dtype = torch.float32, batch_size: int = 4, overwrite: bool = False,
                    progress: bool = True) -> dict:
    """Caption every clip that has no caption yet (every clip with `overwrite`); returns counts."""
    from ..model.captioner import Captioner, check_caption_model

    check_caption_model(model)  # before reading anything: a missing folder is one error line
    dataset = Path(dataset)
    records = read_manifest(dataset)
    text = cfg.model.text
    todo = [r for r in records if overwrite or read_caption(clip_dir(dataset, r.clip_id)) is None]
    counts = {"clips": len(records), "captioned": 0, "kept": len(records) - len(todo), "failed": 0}
    failures: list[str] = []
    if todo:
        captioner = Captioner(model, text.caption_prompt, device=device, dtype=dtype,
                              max_new_tokens=text.caption_max_tokens)
        bar = tqdm(total=len(todo), desc="caption", unit="clip", disable=not progress)
        for k in range(0, len(todo), batch_size):
            batch, frames = [], []
            for r in todo[k:k + batch_size]:
                try:
                    frames.append(spread_frames(clip_dir(dataset, r.clip_id) / "video.mp4", text.caption_frames))
                    batch.append(r)
                except (OSError, ValueError) as exc:  # an unreadable clip is reported, never fatal
                    counts["failed"] += 1
                    failures.append(f"{r.clip_id}: {exc}")
            for r, caption in zip(batch, captioner(frames) if batch else []):
                atomic_write_bytes(clip_dir(dataset, r.clip_id) / CAPTION_FILE, (caption + "\n").encode())
                counts["captioned"] += 1
            bar.update(len(todo[k:k + batch_size]))
        bar.close()
    captions = {r.clip_id: read_caption(clip_dir(dataset, r.clip_id)) for r in records}
    write_manifest(dataset, [dataclasses.replace(r, extra={**r.extra, "caption": captions[r.clip_id]})
                             if captions[r.clip_id] is not None else r for r in records])
    return {**counts, "failures": failures}
