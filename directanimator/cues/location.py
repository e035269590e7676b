"""Location Cue: body and face masks aligned to the reference, the body mask grid-softened.

Foreground-based spatial alignment, appendix A.2, eqs (9)-(12). Coordinates are continuous pixel
coordinates: pixel (i, j) covers [j, j+1) x [i, i+1), so a tight box is [x_min, x_max) with x_max
exclusive and h(B) = y_max - y_min counts rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Alignment:
    """The global similarity transform T(x) = s x + t of eq (11), shared by all frames."""

    scale: float
    translation: tuple[float, float]

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(xy, dtype=np.float64) + np.asarray(self.translation)

    def cv2_matrix(self) -> np.ndarray:
        """The 2x3 matrix for cv2.warpAffine, whose coordinates are pixel centres (x + 0.5)."""
        s, (tx, ty) = self.scale, self.translation
        offset = 0.5 * (s - 1.0)
        return np.array([[s, 0.0, tx + offset], [0.0, s, ty + offset]])

    def as_dict(self) -> dict:
        return {"scale": self.scale, "translation": list(self.translation)}


IDENTITY = Alignment(1.0, (0.0, 0.0))


def tight_box(mask: np.ndarray) -> np.ndarray | None:
    """B = [x_min, x_max, y_min, y_max] of a binary mask (max exclusive), None if empty."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y0, y1 = np.nonzero(rows)[0][[0, -1]]
    x0, x1 = np.nonzero(cols)[0][[0, -1]]
    return np.array([x0, x1 + 1, y0, y1 + 1], dtype=np.float64)


def box_center(b: np.ndarray) -> np.ndarray:
    return np.array([(b[0] + b[1]) / 2.0, (b[2] + b[3]) / 2.0])


def box_height(b: np.ndarray) -> float:
    return float(b[3] - b[2])


def estimate_alignment(reference_box: np.ndarray, driving_boxes: list[np.ndarray | None]) -> Alignment:
    """Eqs (9)-(10): s = median_t(h_ref / h_t), t = c_ref - s * mean_t(c_t), over frames with a person."""
    boxes = [b for b in driving_boxes if b is not None and box_height(b) > 0]
    if not boxes:
        return IDENTITY
    s = float(np.median([box_height(reference_box) / box_height(b) for b in boxes]))  # eq (9)
    c_bar = np.mean([box_center(b) for b in boxes], axis=0)  # eq (10)
    t = box_center(reference_box) - s * c_bar
    return Alignment(s, (float(t[0]), float(t[1])))


def warp_mask(mask: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Eq (12): M~(x) = M(T^-1(x)); float32 (H, W) in [0, 1] (bilinear at the edge)."""
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.float32), alignment.cv2_matrix(), (w, h),
                          flags=cv2.INTER_LINEAR, borderValue=0.0)


def box_mask(box: np.ndarray | None, shape: tuple[int, int], alignment: Alignment) -> np.ndarray:
    """Filled (H, W) float32 mask of a face box (x0, y0, x1, y1) mapped through T; zeros if None."""
    out = np.zeros(shape, np.float32)
    if box is None:
        return out
    (x0, y0), (x1, y1) = alignment.apply([box[0], box[1]]), alignment.apply([box[2], box[3]])
    h, w = shape
    a0, b0 = int(np.clip(round(x0), 0, w)), int(np.clip(round(y0), 0, h))
    a1, b1 = int(np.clip(round(x1), 0, w)), int(np.clip(round(y1), 0, h))
    out[b0:b1, a0:a1] = 1.0
    return out


def _cells(mask: np.ndarray, cell: int) -> tuple[np.ndarray, int, int]:
    """Per-cell coverage (gh, gw) of an (H, W) mask; the last row/column of cells may be partial."""
    h, w = mask.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), np.float32)
    padded[:h, :w] = mask
    cells = cv2.resize(padded, (gw, gh), interpolation=cv2.INTER_AREA)
    if (gh * cell, gw * cell) != (h, w):
        # Partial cells at the right/bottom edge: coverage of the in-frame pixels only.
        inside = np.zeros_like(padded)
        inside[:h, :w] = 1.0
        cells /= cv2.resize(inside, (gw, gh), interpolation=cv2.INTER_AREA)
    return cells, gh, gw


def grid_quantize(mask: np.ndarray, cell: int) -> np.ndarray:
    """Per-cell coverage broadcast back to pixels: the coarse silhouette. Idempotent."""
    h, w = mask.shape
    cells, gh, gw = _cells(mask, cell)
    return cv2.resize(cells, (gw * cell, gh * cell), interpolation=cv2.INTER_NEAREST)[:h, :w]


def grid_soften(mask: np.ndarray, cell: int) -> np.ndarray:
    """Grid-based softening (paper 3.1, A.2): the mask's coverage of each `cell` x `cell` cell,
    interpolated bilinearly between cell centres. Inside the silhouette (cells fully covered, with
    fully covered neighbours) it stays 1, outside 0, and the boundary becomes a ramp about one cell
    wide that follows the grid, not the driver's exact outline (which would leak identity)."""
    h, w = mask.shape
    cells, gh, gw = _cells(mask, cell)
    return cv2.resize(cells, (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)[:h, :w]


def location_masks(body: np.ndarray, face_box: np.ndarray | None, alignment: Alignment, mode: str,
                   cell: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's Location Cue: (body, face) float32 masks in [0, 1], aligned to the reference."""
    shape = body.shape
    if mode == "off":
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    aligned = warp_mask(body, alignment)
    if mode == "soft":
        aligned = grid_soften(aligned, cell)
    elif mode != "hard":
        raise ValueError(f"unknown location cue mode {mode!r}; choose soft, hard or off")
    return aligned, box_mask(face_box, shape, alignment)
