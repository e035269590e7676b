"""Person segmentation behind one small protocol (paper 3.1: "isolate the foreground regions").

The paper uses Grounded-SAM on a GPU; the embedded default here is MediaPipe selfie segmentation,
which ships inside the mediapipe 0.10.21 wheel and runs in ~3 ms per 512x512 frame on a CPU.
`GivenMasks` feeds ground-truth masks (the puppet world) through the same seam.

Main subject rule (selfie segmentation returns every person in one mask): the foreground is split
into connected components. In the first frame with a person the largest component is the subject.
Afterwards the subject is the component that overlaps most with the previous subject mask (grown by
a few pixels to allow for motion); with no overlap (a cut, or a frame where the subject vanished)
the largest component is taken again. Smaller components whose box lies inside the subject's box
(widened by 15%) are kept with it, so a hand separated by a thin gap still belongs to the body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import cv2
import numpy as np

from ..errors import InputError


@runtime_checkable
class Segmenter(Protocol):
    """Anything that turns a frame into a person-probability map."""

    name: str
    # True when the segmenter may be shown a zoomed crop instead of the whole frame (a model);
    # False when it must see frame `index` as it is (ground-truth masks).
    supports_roi: bool

    def segment(self, rgb: np.ndarray, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame number `index` -> (H, W) float32 foreground probability."""
        ...


class MediaPipeSegmenter:
    """MediaPipe selfie segmentation (embedded weights; model 0 general, 1 landscape)."""

    supports_roi = True

    def __init__(self, model_selection: int = 1):
        import mediapipe as mp

        from ._native import quiet_native_stderr

        self.name = f"mediapipe-{mp.__version__}/selfie_segmentation/model{model_selection}"
        with quiet_native_stderr():
            self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
            self._model.process(np.zeros((64, 64, 3), np.uint8))

    def segment(self, rgb: np.ndarray, index: int) -> np.ndarray:
        result = self._model.process(rgb)
        return np.asarray(result.segmentation_mask, dtype=np.float32)

    def close(self) -> None:
        self._model.close()


class GivenMasks:
    """Masks supplied with the video: a sequence of (H, W) arrays or a mask video (gray mp4).

    Masks are letterboxed with the same transform as the frames (`transform`, a callable).
    """

    name = "given-masks"
    supports_roi = False
    given = True  # ground truth at the working size: no detection size of its own

    def __init__(self, masks, transform=None):
        self._transform = transform
        if isinstance(masks, (str, Path)):
            self._path = Path(masks)
            if not self._path.exists():
                raise InputError(f"mask video not found: {self._path}")
            self._masks = None
        else:
            self._path = None
            self._masks = masks
        self._iter: Iterator[np.ndarray] | None = None
        self._next_index = 0

    def _from_video(self, index: int) -> np.ndarray:
        from ..video import iter_frames

        if self._iter is None or index < self._next_index:
            self._iter, self._next_index = iter_frames(self._path), 0
        frame = None
        while self._next_index <= index:
            try:
                frame = next(self._iter)
            except StopIteration:
                raise InputError(f"mask video {self._path} has fewer frames than the driving video") from None
            self._next_index += 1
        return frame[:, :, 0]

    def segment(self, rgb: np.ndarray, index: int) -> np.ndarray:
        mask = self._from_video(index) if self._path is not None else np.asarray(self._masks[index])
        mask = mask.astype(np.float32)
        if mask.max() > 1.0:
            mask /= 255.0
        if self._transform is not None:
            mask = self._transform(mask)
        if mask.shape != rgb.shape[:2]:
            raise InputError(f"given mask of shape {mask.shape} does not match frame {rgb.shape[:2]}")
        return mask


def select_subject(foreground: np.ndarray, previous: np.ndarray | None, min_area: int) -> np.ndarray:
    """Binary (H, W) foreground -> binary mask of the main subject (rule in the module docstring)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(foreground, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    candidates = [i + 1 for i in range(count - 1) if areas[i] >= min_area]
    if not candidates:
        return np.zeros_like(foreground, dtype=bool)
    chosen = None
    if previous is not None and previous.any():
        grown = cv2.dilate(previous.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        overlap = np.bincount(labels[grown].ravel(), minlength=count)
        best = max(candidates, key=lambda i: overlap[i])
        if overlap[best] > 0:
            chosen = best
    if chosen is None:
        chosen = max(candidates, key=lambda i: stats[i, cv2.CC_STAT_AREA])
    x, y, w, h = stats[chosen, :4]
    mx, my = 0.15 * w, 0.15 * h
    keep = [chosen]
    for i in candidates:
        if i == chosen:
            continue
        cx, cy, cw, ch = stats[i, :4]
        if cx >= x - mx and cy >= y - my and cx + cw <= x + w + mx and cy + ch <= y + h + my:
            keep.append(i)
    if len(keep) == 1:
        return labels == chosen
    return np.isin(labels, keep)


def roi_square(box: np.ndarray, expand: float, min_side: int) -> tuple[int, int, int, int]:
    """Integer square (x0, y0, x1, y1) around a tight box [x_min, x_max, y_min, y_max], may leave the frame."""
    cx, cy = 0.5 * (box[0] + box[1]), 0.5 * (box[2] + box[3])
    side = max(min_side, int(round(expand * max(box[1] - box[0], box[3] - box[2]))))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    return x0, y0, x0 + side, y0 + side


def crop_square(rgb: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The ROI of `rgb`, zero-padded where it leaves the frame."""
    x0, y0, x1, y1 = roi
    h, w = rgb.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + rgb.shape[2:], rgb.dtype)
    a0, b0, a1, b1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if a1 > a0 and b1 > b0:
        out[b0 - y0 : b1 - y0, a0 - x0 : a1 - x0] = rgb[b0:b1, a0:a1]
    return out


def paste_square(prob: np.ndarray, roi: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of crop_square for a (side, side) map: a full-frame map, zeros outside the ROI."""
    x0, y0, x1, y1 = roi
    h, w = shape
    out = np.zeros((h, w), np.float32)
    a0, b0, a1, b1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if a1 > a0 and b1 > b0:
        out[b0:b1, a0:a1] = prob[b0 - y0 : b1 - y0, a0 - x0 : a1 - x0]
    return out


class SubjectTracker:
    """Segments the main subject frame by frame, zooming in on it.

    Person segmenters built for selfies (MediaPipe's) return blobs when the person is small in a
    wide frame. So after the first frame the segmenter sees a square crop around the previous
    subject box (`roi_expand` times its longer side, resized to `roi_input` pixels), and its answer
    is pasted back; the full frame is used again whenever the subject is lost. Segmenters that
    do not support crops (`supports_roi = False`, e.g. ground-truth masks) see the full frame.
    """

    def __init__(self, segmenter: Segmenter, threshold: float, min_area: int, roi: bool = True,
                 roi_expand: float = 1.4, roi_input: int = 256):
        self.segmenter = segmenter
        self.threshold, self.min_area = threshold, min_area
        self.roi = roi and segmenter.supports_roi
        self.roi_expand, self.roi_input = roi_expand, roi_input
        self.previous: np.ndarray | None = None
        self.last_roi: tuple[int, int, int, int] | None = None

    def _segment_roi(self, rgb: np.ndarray, index: int, roi: tuple[int, int, int, int]) -> np.ndarray:
        crop = crop_square(rgb, roi)
        side = crop.shape[0]
        small = cv2.resize(crop, (self.roi_input, self.roi_input),
                           interpolation=cv2.INTER_AREA if side > self.roi_input else cv2.INTER_LINEAR)
        prob = cv2.resize(self.segmenter.segment(small, index), (side, side), interpolation=cv2.INTER_LINEAR)
        return paste_square(prob, roi, rgb.shape[:2])

    def __call__(self, rgb: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame -> (probability map, subject mask), both (H, W)."""
        from .location import tight_box

        self.last_roi = None
        prob = subject = None
        box = tight_box(self.previous) if (self.roi and self.previous is not None) else None
        if box is not None:
            roi = roi_square(box, self.roi_expand, self.roi_input // 2)
            prob = self._segment_roi(rgb, index, roi)
            subject = select_subject(prob >= self.threshold, self.previous, self.min_area)
            self.last_roi = roi
        if subject is None or not subject.any():
            prob = self.segmenter.segment(rgb, index)
            subject = select_subject(prob >= self.threshold, None, self.min_area)
            self.last_roi = None
            box = tight_box(subject)
            if self.roi and box is not None:
                # Zoom in twice from the full-frame guess, which is coarse for small people.
                for _ in range(2):
                    roi = roi_square(box, self.roi_expand, self.roi_input // 2)
                    p = self._segment_roi(rgb, index, roi)
                    s = select_subject(p >= self.threshold, subject, self.min_area)
                    if not s.any():
                        break
                    prob, subject, box, self.last_roi = p, s, tight_box(s), roi
        if subject.any():
            self.previous = subject
        return prob, subject
