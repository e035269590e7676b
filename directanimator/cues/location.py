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
NO_PERSON = np.zeros(4)  # the tight box of an empty mask, for `location_masks(..., box=)`


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


def _reach(lo: float, hi: float, alignment: Alignment, axis: int, n: int) -> tuple[int, int]:
    """Source pixels [lo, hi) along `axis` (0 x, 1 y) -> the destination pixels [a, b) of an n-pixel
    axis that `warp_mask` can make nonzero (bilinear samples within one pixel of them), two to spare."""
    s, offset = alignment.scale, alignment.cv2_matrix()[axis, 2]
    return (int(np.clip(np.floor(s * (lo - 1) + offset) - 2, 0, n)),
            int(np.clip(np.ceil(s * hi + offset) + 2, 0, n)))


def warp_mask_on_support(mask: np.ndarray, alignment: Alignment, box: np.ndarray) -> tuple[np.ndarray, tuple]:
    """`warp_mask` of a mask that is zero outside its tight box `box` [x_min, x_max, y_min, y_max]:
    only the part of the output the box can reach is computed, from the box's pixels. Returns the
    (H, W) result and that part (x0, x1, y0, y1). The same values as `warp_mask` up to OpenCV's
    fixed-point rounding of the sample positions (1/32 pixel)."""
    h, w = mask.shape
    x0, x1, y0, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:  # an empty mask (NO_PERSON)
        return np.zeros((h, w), np.float32), (0, 0, 0, 0)
    (u0, u1), (v0, v1) = _reach(x0, x1, alignment, 0, w), _reach(y0, y1, alignment, 1, h)
    out = np.zeros((h, w), np.float32)
    if u1 <= u0 or v1 <= v0:  # it lands outside the frame
        return out, (0, 0, 0, 0)
    sx0, sy0 = max(0, x0 - 1), max(0, y0 - 1)  # the box and a zero pixel around it: the border is 0
    src = mask[sy0:min(h, y1 + 1), sx0:min(w, x1 + 1)].astype(np.float32)
    m = alignment.cv2_matrix()
    s = alignment.scale
    # output pixel u of the part is u + u0 of the frame, source pixel x of the window x + sx0
    m[0, 2] += s * sx0 - u0
    m[1, 2] += s * sy0 - v0
    out[v0:v1, u0:u1] = cv2.warpAffine(src, m, (u1 - u0, v1 - v0), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return out, (u0, u1, v0, v1)


def grid_soften_on_support(mask: np.ndarray, cell: int, part: tuple[int, int, int, int]) -> np.ndarray:
    """`grid_soften` of a mask that is zero outside `part` (x0, x1, y0, y1): the cells that touch it
    and one ring of (empty) cells around them, which the bilinear ramp reaches; zeros elsewhere. The
    window starts on the cell grid and its border cells are empty, so every value is the whole
    frame's (the same cells, the same weights)."""
    h, w = mask.shape
    x0, x1, y0, y1 = part
    out = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return out
    gx0, gy0 = max(0, x0 // cell - 1), max(0, y0 // cell - 1)
    gx1, gy1 = -(-x1 // cell) + 1, -(-y1 // cell) + 1
    a0, b0 = gx0 * cell, gy0 * cell
    a1, b1 = min(w, gx1 * cell), min(h, gy1 * cell)
    out[b0:b1, a0:a1] = grid_soften(mask[b0:b1, a0:a1], cell)
    return out


def location_masks(body: np.ndarray, face_box: np.ndarray | None, alignment: Alignment, mode: str,
                   cell: int, box: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame's Location Cue: (body, face) float32 masks in [0, 1], aligned to the reference.
    `box`, when given, is the body mask's `tight_box` (the cue job has it from its first pass;
    `NO_PERSON` for an empty mask): the warp and the softening then run on the part of the frame the
    person reaches. The same masks to OpenCV's fixed-point rounding of the warp's sample positions
    (1/32 pixel: at most 2 levels of 255 in `soft`, on a few pixels in a thousand at most;
    tests/cues/test_location.py)."""
    shape = body.shape
    if mode == "off":
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    if mode not in ("soft", "hard"):
        raise ValueError(f"unknown location cue mode {mode!r}; choose soft, hard or off")
    if box is not None:
        aligned, part = warp_mask_on_support(body, alignment, box)
        if mode == "soft":
            aligned = grid_soften_on_support(aligned, cell, part)
    else:
        aligned = warp_mask(body, alignment)
        if mode == "soft":
            aligned = grid_soften(aligned, cell)
    return aligned, box_mask(face_box, shape, alignment)
