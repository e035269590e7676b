"""Per-frame quality of a segmentation, for dropping low-quality frames (paper 3.1).

The paper discards low-quality segmentation results "forcing the model to rely on adjacent results"
but gives no criterion. Ours is a score in [0, 1], the product of three terms:

- area stability: 1 - |a_t - m_t| / (max_area_jump * m_t), clipped to [0, 1], where a_t is the
  subject area and m_t the mean area of the nearest neighbours that have a person (a mask that
  suddenly grows or shrinks is suspicious);
- compactness: the largest connected component's share of the subject mask (fragmented masks are
  suspicious);
- confidence: the mean of |2p - 1| over pixels the model puts near the subject (p > 0.1 inside the
  subject's box), 1 for a crisp mask, 0 for a mask that hovers at p = 0.5.

Frames without a person score 0 and are reported as such, not as dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class MaskStats:
    area: int
    compactness: float
    confidence: float


def mask_stats(prob: np.ndarray, subject: np.ndarray, box: np.ndarray | None = None) -> MaskStats:
    """Statistics of one frame: probability map (H, W) float and binary subject mask (H, W); `box`,
    when given, is the subject's tight box [x_min, x_max, y_min, y_max] (`tight_box`): the work is
    then done on that part of the frame only (the same numbers)."""
    from .segment import components

    if box is None:
        from .location import tight_box

        box = tight_box(subject)
    if box is None:
        return MaskStats(0, 0.0, 0.0)
    x0, x1, y0, y1 = (int(v) for v in box)
    inside = subject[y0:y1, x0:x1]
    area = int(np.count_nonzero(inside))
    if area == 0:
        return MaskStats(0, 0.0, 0.0)
    count, _, stats = components(inside)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else area
    region = prob[y0:y1, x0:x1]
    near = region[region > 0.1]
    confidence = float(np.abs(2.0 * near - 1.0).mean()) if near.size else 0.0
    return MaskStats(area, largest / area, confidence)


def quality_scores(stats: list[MaskStats], max_area_jump: float) -> np.ndarray:
    """Scores (T,) in [0, 1] from the per-frame statistics of a whole sequence."""
    areas = np.array([s.area for s in stats], dtype=np.float64)
    present = np.nonzero(areas > 0)[0]
    scores = np.zeros(len(stats))
    for k, t in enumerate(present):
        neighbours = [areas[present[j]] for j in (k - 1, k + 1) if 0 <= j < len(present)]
        if neighbours:
            m = float(np.mean(neighbours))
            area_term = float(np.clip(1.0 - abs(areas[t] - m) / (max_area_jump * m), 0.0, 1.0))
        else:
            area_term = 1.0
        scores[t] = area_term * stats[t].compactness * stats[t].confidence
    return scores
