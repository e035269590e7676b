"""`directanimator preprocess`: build the training caches of a dataset (data/cache.py).

Resumable (an entry whose source fingerprint and config key match is kept), a clip that fails is
recorded in failures-<rank>.jsonl and skipped, and under `accelerate launch` / `torchrun` each
process takes a disjoint shard of the clips (with their pseudo clips).
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

from tqdm import tqdm

from ..config import Config
from ..errors import InputError
from ..model import build_codec
from ..storage import atomic_write_bytes
from .cache import (build_clip_entry, build_pseudo_entry, cache_key, cache_root, fingerprint, read_caption, read_meta,
                    text_encoder_id, write_cache_config)
from .format import clip_dir, read_manifest


class _CaptionEncoder:
    """The text encoder for clips' captions, built on first need (a dataset without captions never
    loads T5). The null prompt of models from scratch gives zeros whatever the caption: then no
    embedding is stored, and training uses it as for the fixed prompt."""

    def __init__(self, cfg: Config, device: str | None):
        self.cfg, self.device, self._encoder = cfg, device or "cpu", None

    def wanted(self, folder: Path) -> bool:
        m = self.cfg.model
        return m.text.use_captions and bool(m.text.encoder_path or m.pretrained) and read_caption(folder) is not None

    @property
    def encoder(self):
        if self._encoder is None:
            from types import SimpleNamespace

            from ..model import build_text_encoder

            m = self.cfg.model
            sizes = m.transformer  # the checkpoint's own config.json for a pretrained model
            if m.pretrained:
                import json

                from ..model.weights import find_component

                folder = find_component(Path(m.pretrained), "transformer", "transformer", "its weights")
                sizes = SimpleNamespace(**json.loads((folder / "config.json").read_text()))
            shape = SimpleNamespace(config=SimpleNamespace(max_text_seq_length=sizes.max_text_seq_length,
                                                           text_embed_dim=sizes.text_embed_dim))
            self._encoder = build_text_encoder(m, shape, device=self.device)
        return self._encoder


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def preprocess(dataset: str | Path, cfg: Config, progress: bool = True, rank: int | None = None,
               world_size: int | None = None, device: str | None = None) -> dict:
    """Build the caches of `dataset` for `cfg`, the codec (the CogVideoX VAE) on `device` (default
    CPU) in `data.codec_dtype`."""
    dataset = Path(dataset)
    env_rank, env_world = _rank_world()
    rank = env_rank if rank is None else rank
    world = env_world if world_size is None else world_size
    records = [r for r in read_manifest(dataset) if r.split == "train" and r.role == "clip"]
    if not records:
        raise InputError(f"{dataset}: no training clips in the manifest")
    pseudo_items: dict[str, list[dict]] = {}
    if (dataset / "pseudo" / "manifest.jsonl").is_file():
        from .format import read_pseudo_manifest

        for item in read_pseudo_manifest(dataset, split="train"):
            pseudo_items.setdefault(item["source_clip"], []).append(item)
    import torch

    root = cache_root(dataset, cfg)
    write_cache_config(root, cfg)
    key = cache_key(cfg)
    codec = build_codec(cfg.model, device=device or "cpu", dtype=getattr(torch, cfg.data.codec_dtype))
    mine = records[rank::world]
    counts = {"built": 0, "kept": 0, "failed": 0, "pseudo_built": 0, "pseudo_kept": 0, "pseudo_failed": 0}
    failures = []

    text = _CaptionEncoder(cfg, device)

    def fresh(path: Path, folder: Path) -> dict | None:
        meta = read_meta(path) if path.is_file() else None
        if meta and text.wanted(folder) and meta.get("text_encoder") != text_encoder_id(cfg):
            return None  # its caption embedding came from another T5
        return meta if meta and meta.get("key") == key and meta.get("fingerprint") == fingerprint(folder) else None

    for rec in tqdm(mine, desc=f"preprocess {rank + 1}/{world}" if world > 1 else "preprocess", unit="clip",
                    disable=not progress, leave=False):
        out = root / "clips" / f"{rec.clip_id}.safetensors"
        try:
            meta = fresh(out, clip_dir(dataset, rec.clip_id))
            if meta is None:
                folder = clip_dir(dataset, rec.clip_id)
                meta = build_clip_entry(dataset, rec, cfg, codec, out, text.encoder if text.wanted(folder) else None)
                counts["built"] += 1
            else:
                counts["kept"] += 1
        except Exception as exc:  # noqa: BLE001 - any failure of one clip is recorded, never fatal
            counts["failed"] += 1
            failures.append({"clip_id": rec.clip_id, "error": f"{type(exc).__name__}: {exc}",
                             "trace": traceback.format_exc(limit=3)})
            continue
        for item in pseudo_items.get(rec.clip_id, []):
            pout = root / "pseudo" / f"{item['pseudo_id']}.safetensors"
            try:
                if fresh(pout, clip_dir(dataset / "pseudo", item["pseudo_id"])) is None:
                    build_pseudo_entry(dataset, dataset / "pseudo", item, meta, cfg, codec, pout)
                    counts["pseudo_built"] += 1
                else:
                    counts["pseudo_kept"] += 1
            except Exception as exc:  # noqa: BLE001
                counts["pseudo_failed"] += 1
                failures.append({"clip_id": item["pseudo_id"], "error": f"{type(exc).__name__}: {exc}",
                                 "trace": traceback.format_exc(limit=3)})
    atomic_write_bytes(root / f"failures-{rank}.jsonl", "".join(json.dumps(f) + "\n" for f in failures).encode())
    return {"cache": str(root), "rank": rank, "world_size": world, "clips": len(mine), **counts,
            "failures": [{"clip_id": f["clip_id"], "error": f["error"]} for f in failures]}
