"""The detectors of one cue extraction, carried as one object.

A cue extraction needs a person segmenter, a face detector, optionally a keypoint source (the
skeleton pose mode) and the reference photo's person mask. By default the embedded MediaPipe models
find them; data with ground truth (the puppet world, annotated datasets) supplies them instead.
`Detectors.from_annotations` builds the given ones from a driving clip's and a reference's annotations
(`GivenMasks`, `GivenFaceBoxes`, `GivenKeypoints`), so callers stop assembling them by hand;
`kwargs()` is what `extract_cues`, `extract_cues_in_memory` and the pipeline take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _field(source: Any, name: str):
    """`source[name]` for annotation dicts, `source.name` for clips; None when absent."""
    if source is None:
        return None
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


@dataclass
class Detectors:
    """None fields: the embedded models (MediaPipe), or, for `reference_mask`, segmentation of the photo."""

    segmenter: Any = None
    face_detector: Any = None
    keypoints: Any = None
    reference_mask: np.ndarray | None = None

    @classmethod
    def from_annotations(cls, driving: Any, reference: Any = None, frames: int | None = None,
                         skeleton_errors: bool = False) -> "Detectors":
        """Ground truth of a driving clip and a reference (annotation dicts as `read_annotations`
        returns, or rendered clips): masks (T, H, W), face_boxes (T, 4), keypoints (T, 17, 3); the
        reference's first frame gives its mask and face box. `frames` keeps the first N frames;
        `skeleton_errors` passes the keypoints through the skeleton-detector error model."""
        from .face import GivenFaceBoxes
        from .segment import GivenMasks
        from .skeleton import GivenKeypoints

        def first(x):
            return None if x is None else x[:frames] if frames is not None else x

        masks, boxes, keypoints = (first(_field(driving, k)) for k in ("masks", "face_boxes", "keypoints"))
        ref_masks, ref_boxes = _field(reference, "masks"), _field(reference, "face_boxes")
        return cls(
            segmenter=GivenMasks(list(np.asarray(masks).astype(np.float32))) if masks is not None else None,
            face_detector=GivenFaceBoxes(boxes, reference_box=ref_boxes[0] if ref_boxes is not None else None)
            if boxes is not None else None,
            keypoints=GivenKeypoints(keypoints, errors=skeleton_errors) if keypoints is not None else None,
            reference_mask=np.asarray(ref_masks[0]) if ref_masks is not None else None,
        )

    def kwargs(self) -> dict:
        """The set fields as keyword arguments of the cue extraction and the pipeline."""
        return {k: v for k, v in (("segmenter", self.segmenter), ("face_detector", self.face_detector),
                                  ("keypoints", self.keypoints), ("reference_mask", self.reference_mask))
                if v is not None}
