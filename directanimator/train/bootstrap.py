"""The `directanimator` pseudo generator: bootstrap pseudo driving clips with our own same-ID model.

For a training clip, the same-ID checkpoint (`pseudo.checkpoint`) animates the first frame of
another training clip (another identity when identities are known) with the clip as the driving
video. The result shows another person doing the clip's motion, as the paper's StableAnimator /
MimicMotion pseudo clips do, and goes through the same automated filter.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..config import Config
from ..data.format import ClipRecord, clip_dir, read_annotations, read_manifest
from ..errors import InputError
from ..video import iter_frames


class DirectAnimatorPseudo:
    name = "directanimator"

    def __init__(self, dataset: Path, cfg: Config):
        from ..pipeline import DirectAnimatorPipeline

        if not cfg.pseudo.checkpoint:
            raise InputError("pseudo.generator directanimator needs a same-ID checkpoint: pass --checkpoint RUN")
        self.pipe = DirectAnimatorPipeline.from_pretrained(cfg.pseudo.checkpoint)
        self.dataset = Path(dataset)
        self.pool = [r for r in read_manifest(dataset) if r.split == "train" and r.role == "clip"]
        self.seed = cfg.pseudo.seed

    def _annotations(self, clip_id: str) -> dict | None:
        try:
            return read_annotations(self.dataset, clip_id)
        except InputError:
            return None

    def generate(self, source: ClipRecord, index: int):
        from ..cues.detectors import Detectors

        r = np.random.default_rng([zlib.crc32(source.clip_id.encode()), index, self.seed])
        others = [c for c in self.pool if c.clip_id != source.clip_id and
                  (c.identity_id is None or c.identity_id != source.identity_id)]
        if not others:
            raise InputError("the bootstrap generator needs another training clip as reference")
        ref_rec = others[int(r.integers(len(others)))]
        reference = next(iter_frames(clip_dir(self.dataset, ref_rec.clip_id) / "video.mp4"))
        drv_ann, ref_ann = self._annotations(source.clip_id), self._annotations(ref_rec.clip_id)
        kwargs = {}
        if drv_ann is not None and ref_ann is not None:
            kwargs = Detectors.from_annotations({k: drv_ann[k] for k in ("masks", "face_boxes")}, ref_ann).kwargs()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pseudo.mp4"
            self.pipe(reference, clip_dir(self.dataset, source.clip_id) / "video.mp4", out,
                      seed=int(r.integers(1 << 30)), progress=False, **kwargs)
            frames = np.stack(list(iter_frames(out)))
        return frames, {}, {"reference_clip": ref_rec.clip_id, "reference_identity": ref_rec.identity_id}
