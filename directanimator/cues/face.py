"""Face Cue: the face detected, enlarged and centred (paper 3.1, A.2).

The paper detects faces with InsightFace; the embedded default is MediaPipe face detection (weights
inside the mediapipe wheel). Boxes are (x0, y0, x1, y1) in working pixels, x1/y1 exclusive.
Per sequence: the subject's face is picked in each frame, gaps of up to `max_gap` frames are filled
by linear interpolation, and box centre and size are smoothed with a centred moving average.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np

Box = np.ndarray  # (4,) float64: x0, y0, x1, y1


@runtime_checkable
class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        """(H, W, 3) uint8 RGB -> [(box, score), ...] in pixels."""
        ...


class MediaPipeFaceDetector:
    """MediaPipe face detection (embedded weights; model 0 short range, 1 full range)."""

    def __init__(self, model_selection: int = 1, min_confidence: float = 0.5):
        import mediapipe as mp

        from ._native import quiet_native_stderr

        self.name = f"mediapipe-{mp.__version__}/face_detection/model{model_selection}"
        with quiet_native_stderr():
            self._model = mp.solutions.face_detection.FaceDetection(
                model_selection=model_selection, min_detection_confidence=min_confidence)
            self._model.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        h, w = rgb.shape[:2]
        result = self._model.process(rgb)
        found = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h])
            found.append((box, float(det.score[0])))
        return found

    def close(self) -> None:
        self._model.close()


def head_roi(subject: np.ndarray, box: np.ndarray, fraction: float = 0.45) -> tuple[int, int, int, int]:
    """Square around the head: centred on the top 12% of the subject mask, side `fraction` of its
    height. `box` is the subject's tight box [x_min, x_max, y_min, y_max]."""
    x0, x1, y0, y1 = box
    h = y1 - y0
    top = subject[int(y0) : int(y0 + max(2.0, 0.12 * h))]
    xs = np.nonzero(top.any(axis=0))[0]
    cx = float(xs.mean()) + 0.5 if len(xs) else 0.5 * (x0 + x1)
    cy = y0 + 0.12 * h
    side = max(16, int(round(fraction * h)))
    left, upper = int(round(cx - side / 2)), int(round(cy - side / 2))
    return left, upper, left + side, upper + side


def detect_in_roi(detector: FaceDetector, rgb: np.ndarray, roi: tuple[int, int, int, int],
                  input_size: int) -> list[tuple[Box, float]]:
    """Run `detector` on a square crop resized to `input_size`; boxes come back in frame pixels."""
    from .segment import crop_square

    crop = crop_square(rgb, roi, view=True)
    k = input_size / crop.shape[0]
    small = cv2.resize(crop, (input_size, input_size), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    offset = np.array([roi[0], roi[1], roi[0], roi[1]], np.float64)
    return [(box / k + offset, score) for box, score in detector.detect(small)]


class GivenFaceBoxes:
    """Face boxes supplied with the video (the puppet world's ground truth): (T, 4) x0, y0, x1, y1 in
    source pixels, NaN rows = no face, mapped into the working frame by `scale` and `offset` (the
    letterbox). `reference_box` answers for the reference image (index None)."""

    name = "given-face-boxes"
    given = True  # ground truth at the working size: no detection size of its own

    def __init__(self, boxes: np.ndarray, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0),
                 reference_box: np.ndarray | None = None):
        shift = np.array([offset[0], offset[1], offset[0], offset[1]], np.float32)
        self.boxes = np.asarray(boxes, np.float32) * scale + shift
        self.reference_box = None if reference_box is None else np.asarray(reference_box, np.float32) * scale + shift

    def detect(self, rgb: np.ndarray, index: int | None = None) -> list[tuple[Box, float]]:
        box = self.reference_box if index is None else (self.boxes[index] if index < len(self.boxes) else None)
        if box is None or not np.isfinite(box).all():
            return []
        return [(box.copy(), 1.0)]


class SubjectFaceFinder:
    """Finds the main subject's face. Full-body frames make faces tiny, so the short-range detector
    first looks at an upscaled crop around the head (top of the subject mask); failing that, the
    full-range detector looks at the subject's crop, or the whole frame. Without a `wide`
    detector, `head` is asked once with the whole frame.

    The full-range try costs about three short-range ones and, where the short range fails (the face
    turned away or hidden), mostly fails too. So over a video's frames (calls with an `index`, in
    order) it backs off: after k failures in a row it sits out the next min(k, `max_skip`) frames
    that need it (0: asked every time), and after one success it is asked every time again. With
    `max_skip` below the Face Cue's gap filling (cues.face.max_gap), a face it would have found on a
    frame it sat out is interpolated from its neighbours. A photo (no index) is always searched."""

    def __init__(self, head: FaceDetector, wide: FaceDetector | None = None, max_skip: int = 3):
        self.head, self.wide, self.max_skip = head, wide, max_skip
        self._wide_failures = 0  # the fallback's failures in a row over the video's frames
        self._wide_skip = 0  # frames needing it that it still sits out
        self.wide_calls = 0  # how often the fallback ran (frames of a video)

    @property
    def name(self) -> str:
        return self.head.name if self.wide is None else f"{self.head.name} + {self.wide.name}"

    def __call__(self, rgb: np.ndarray, subject: np.ndarray, subject_box: np.ndarray | None,
                 roi: tuple[int, int, int, int] | None, index: int | None = None) -> Box | None:
        if isinstance(self.head, GivenFaceBoxes):  # frame-indexed ground truth, no search
            return pick_face(self.head.detect(rgb, index), None)
        if self.wide is None or subject_box is None:
            return pick_face(self.head.detect(rgb), subject)
        found = pick_face(detect_in_roi(self.head, rgb, head_roi(subject, subject_box), 192), subject)
        if found is not None:
            return found
        if index is not None and self._wide_skip > 0:  # backing off (frames of a video only)
            self._wide_skip -= 1
            return None
        wide = detect_in_roi(self.wide, rgb, roi, 256) if roi is not None else self.wide.detect(rgb)
        found = pick_face(wide, subject)
        if index is not None:
            self.wide_calls += 1
            self._wide_failures = 0 if found is not None else self._wide_failures + 1
            self._wide_skip = min(self._wide_failures, self.max_skip)
        return found

    def close(self) -> None:
        for d in (self.head, self.wide):
            if hasattr(d, "close"):
                d.close()  # type: ignore[union-attr]


def pick_face(detections: list[tuple[Box, float]], subject: np.ndarray | None) -> Box | None:
    """The detection that lies most inside the subject mask; by score when there is no mask."""
    if not detections:
        return None
    if subject is None or not subject.any():
        return max(detections, key=lambda d: d[1])[0]
    h, w = subject.shape

    def inside(det: tuple[Box, float]) -> float:
        x0, y0, x1, y1 = np.clip(np.round(det[0]).astype(int), 0, [w, h, w, h])
        region = subject[y0:y1, x0:x1]
        return float(region.mean()) if region.size else 0.0

    scored = [(inside(d), d[1], d[0]) for d in detections]
    best = max(scored, key=lambda s: (s[0], s[1]))
    return best[2] if best[0] > 0.05 else None


def track_boxes(boxes: list[Box | None], max_gap: int, smooth_radius: int) -> list[Box | None]:
    """Fill gaps of at most `max_gap` frames linearly, then smooth centre and size per run."""
    n = len(boxes)
    filled: list[Box | None] = list(boxes)
    known = [i for i, b in enumerate(boxes) if b is not None]
    for a, b in zip(known, known[1:]):
        if 1 < b - a <= max_gap + 1:
            for i in range(a + 1, b):
                w = (i - a) / (b - a)
                filled[i] = (1 - w) * boxes[a] + w * boxes[b]
    if smooth_radius <= 0:
        return filled
    # Smooth (cx, cy, side_x, side_y) with a centred moving average inside each contiguous run.
    params = np.array([[0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]), b[2] - b[0], b[3] - b[1]]
                       if b is not None else [np.nan] * 4 for b in filled])
    out: list[Box | None] = [None] * n
    for i in range(n):
        if filled[i] is None:
            continue
        lo, hi = i, i
        while lo > 0 and i - lo < smooth_radius and filled[lo - 1] is not None:
            lo -= 1
        while hi < n - 1 and hi - i < smooth_radius and filled[hi + 1] is not None:
            hi += 1
        # Symmetric window so a run's ends are not pulled towards its inside.
        r = min(i - lo, hi - i)
        cx, cy, sx, sy = params[i - r : i + r + 1].mean(axis=0)
        out[i] = np.array([cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2])
    return out


def enlarged_square(box: Box, margin: float) -> Box:
    """The square around the box centre whose side is the box's longer side times (1 + margin)."""
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    half = 0.5 * max(box[2] - box[0], box[3] - box[1]) * (1.0 + margin)
    return np.array([cx - half, cy - half, cx + half, cy + half])


def face_cue(rgb: np.ndarray, box: Box | None, margin: float, out_size: int,
             enlarge_and_center: bool = True) -> np.ndarray:
    """One frame's Face Cue, (out_size, out_size, 3) uint8; zeros when there is no face.

    Enlarge-and-centre: the enlarged square around the face is resampled to fill the output, with
    zeros outside the frame. Without it (ablation S2), the frame is kept where it is and only the
    face square is visible.
    """
    h, w = rgb.shape[:2]
    if box is None:
        return np.zeros((out_size, out_size, 3), np.uint8)
    x0, y0, x1, y1 = enlarged_square(box, margin)
    if not enlarge_and_center:
        out = np.zeros_like(rgb)
        a0, b0 = max(0, int(round(x0))), max(0, int(round(y0)))
        a1, b1 = min(w, int(round(x1))), min(h, int(round(y1)))
        out[b0:b1, a0:a1] = rgb[b0:b1, a0:a1]
        if (h, w) != (out_size, out_size):
            out = cv2.resize(out, (out_size, out_size), interpolation=cv2.INTER_AREA)
        return out
    scale = out_size / (x1 - x0)
    m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
    return cv2.warpAffine(rgb, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderValue=0)
