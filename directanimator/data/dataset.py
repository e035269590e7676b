"""Training samples read from the caches (data/cache.py), for the two Same2X stages.

same_id   reference, cues and target all from one clip.
cross_id  the student's pose and face cues come from a kept pseudo clip (another identity doing the
          clip's motion, misaligned); the Location Cue, reference and target stay the clip's own;
          the teacher's cues (`teacher_*`) are the clip's own same-ID cues (paper 3.2, A.3).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import Config
from ..errors import InputError
from .cache import ENTRY_KEYS, PSEUDO_KEYS, cache_key, cache_root, read_meta, read_window


class CachedSamples(Dataset):
    def __init__(self, dataset: str | Path, cfg: Config, stage: str):
        self.root = cache_root(dataset, cfg)
        key = cache_key(cfg)
        self.items: list[tuple[Path, Path | None, int]] = []
        self.shapes: list[tuple[int, ...]] = []
        metas: dict[str, dict] = {}
        for f in sorted((self.root / "clips").glob("*.safetensors")):
            meta = read_meta(f)
            if meta and meta.get("key") == key:
                metas[meta["clip_id"]] = meta
        if stage == "same_id":
            for clip_id, meta in metas.items():
                for w in range(len(meta["starts"])):
                    self.items.append((self.root / "clips" / f"{clip_id}.safetensors", None, w))
                    self.shapes.append(tuple(meta["shape"]))
        elif stage == "cross_id":
            from .format import read_pseudo_manifest

            kept = read_pseudo_manifest(dataset, split="train")
            if not kept:
                made = len(read_pseudo_manifest(dataset, kept_only=False, split="train"))
                raise InputError(f"no pseudo clip of {dataset} passed the quality filter ({made} made, 0 kept; "
                                 f"{Path(dataset) / 'pseudo' / 'filter_report.json'} says why each was dropped): "
                                 f"the cross-ID stage has nothing to train on; loosen pseudo.filter or make more "
                                 f"with pseudo.max_per_clip, then run `directanimator pseudo` again")
            for item in kept:
                pfile = self.root / "pseudo" / f"{item['pseudo_id']}.safetensors"
                pmeta = read_meta(pfile) if pfile.is_file() else None
                smeta = metas.get(item["source_clip"])
                if not pmeta or pmeta.get("key") != key or smeta is None:
                    continue
                for w in range(len(smeta["starts"])):
                    self.items.append((self.root / "clips" / f"{item['source_clip']}.safetensors", pfile, w))
                    self.shapes.append(tuple(smeta["shape"]))
        else:
            raise ValueError(f"unknown stage {stage!r}")
        if not self.items:
            raise InputError(f"no cached {stage} samples for this config in {self.root}: run "
                             f"`directanimator preprocess --dataset {dataset} --config CONFIG` first")
        self.captions = self._caption_embeddings(metas, cfg)
        # what a Wan2.1-I2V model takes of the reference (the same for every clip of one config)
        self.reference_keys = tuple(next(iter(metas.values())).get("reference_keys", ()))

    def _caption_embeddings(self, metas: dict[str, dict], cfg: Config) -> bool:
        """True when every sample has its clip's caption embedding (`prompt_embeds`), False when none
        has (the fixed `model.text.prompt` then); a mix is an error: a batch takes one or the other."""
        used = {src for src, _, _ in self.items}
        with_caption = {p for p in used if metas[p.stem].get("text_encoder")}
        if not with_caption or not cfg.model.text.use_captions:
            return False
        if with_caption != used:
            raise InputError(f"{len(with_caption)} of {len(used)} clips in {self.root} have a caption embedding: "
                             f"caption them all (`directanimator caption`, then preprocess again) or set "
                             f"model.text.use_captions: false")
        return True

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        source, pseudo, w = self.items[i]
        # with captions, the clip's own caption: one for all its windows (and its pseudo driving clips)
        sample = read_window(source, w, ENTRY_KEYS + self.reference_keys, ("prompt_embeds",) if self.captions else ())
        if pseudo is not None:
            p = read_window(pseudo, w, PSEUDO_KEYS)
            sample["teacher_pose_latents"] = sample["pose_latents"]
            sample["teacher_face_latents"] = sample["face_latents"]
            sample["pose_latents"], sample["face_latents"] = p["pose_latents"], p["face_latents"]
        return sample
