"""Person segmentation behind one small protocol (paper 3.1: "isolate the foreground regions").

The paper uses Grounded-SAM on a GPU; the embedded default here is MediaPipe selfie segmentation,
which ships inside the mediapipe 0.10.21 wheel and runs in ~3 ms per 512x512 frame on a CPU.
`GivenMasks` feeds ground-truth masks (the puppet world) through the same seam.

Main subject rule (selfie segmentation returns every person in one mask): the foreground is split
into connected components, and a component holding several detected faces (people touching) into
one part per face, cut halfway between neighbouring faces. In the first frame with a person the
subject is chosen by `cues.segmentation.subject` (`SubjectRule`): the largest person (auto, largest),
the one nearest the centre (center), the N-th from the left (0, 1, ...), or the one at a point X,Y
of the source frame.
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


class PoseSeeder:
    """Where a whole body is, when the selfie segmenter sees no one: MediaPipe Pose (BlazePose, full
    body, embedded weights) on the frame; the box [x_min, x_max, y_min, y_max] of its landmarks seen
    with visibility above 0.5 (at least MIN_LANDMARKS of them), grown by a tenth of its height, or None.
    The tracker then segments a crop around it, where the person is large enough for the segmenter."""

    MIN_LANDMARKS = 6

    def __init__(self, min_confidence: float = 0.3):
        self.min_confidence, self._model = min_confidence, None  # loaded when first asked

    def __call__(self, rgb: np.ndarray, tiles: bool = False) -> np.ndarray | None:
        """With `tiles`, when the whole frame shows no body, also the frame's five overlapping squares
        of 60% its side (corners and centre), zoomed in to the detector: a body a fifth of the frame's
        height is too small for it on the whole frame."""
        box = self._detect(rgb)
        if box is not None or not tiles:
            return box
        h, w = rgb.shape[:2]
        side = int(0.6 * max(h, w))
        for x0, y0 in ((w - side) // 2, (h - side) // 2), (0, 0), (w - side, 0), (0, h - side), (w - side, h - side):
            x0, y0 = max(0, x0), max(0, y0)
            box = self._detect(rgb[y0:y0 + side, x0:x0 + side])
            if box is not None:
                return box + np.array([x0, x0, y0, y0])
        return None

    def _detect(self, rgb: np.ndarray) -> np.ndarray | None:
        if self._model is None:
            import mediapipe as mp

            from ._native import quiet_native_stderr

            with quiet_native_stderr():
                self._model = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                     min_detection_confidence=self.min_confidence)
        result = self._model.process(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        pts = np.array([(lm.x * w, lm.y * h) for lm in result.pose_landmarks.landmark if lm.visibility > 0.5])
        if len(pts) < self.MIN_LANDMARKS:
            return None
        x0, x1, y0, y1 = pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()
        grow = 0.1 * (y1 - y0)
        return np.array([x0 - grow, x1 + grow, y0 - grow, y1 + grow])

    def close(self) -> None:
        if self._model is not None:
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


class SubjectRule:
    """Which person is the subject when there are several (`cues.segmentation.subject`):
    "auto" or "largest" (the largest), "center" (nearest the frame's centre), "N" (an integer: the
    N-th person from the left, 0 first), "X,Y" (the person at that point of the source frame, in
    source pixels, or whose box, grown by a quarter, holds it). A point is mapped into the working
    frame with `map_point`. While the chosen person is not found the frame has no subject; once
    found it is tracked."""

    def __init__(self, spec: str = "auto"):
        self.spec = str(spec).strip().lower()
        self.index: int | None = None
        self.point: tuple[float, float] | None = None
        if self.spec in ("auto", "largest", "center"):
            return
        if self.spec.lstrip("-").isdigit():
            self.index = int(self.spec)
            if self.index < 0:
                raise InputError(f"subject index must be 0 or more, got {spec!r}")
            return
        try:
            x, y = (float(v) for v in self.spec.split(","))
        except ValueError:
            raise InputError(f"subject must be auto, largest, center, an index N (0 = leftmost) or a point X,Y in "
                             f"pixels, got {spec!r}") from None
        self.point = (x, y)

    @property
    def needs_people(self) -> bool:
        """True when people must be told apart (any rule but the default)."""
        return self.spec != "auto"

    def choose(self, people: list[np.ndarray], shape: tuple[int, int], map_point=None) -> int | None:
        """Index into `people` (non-empty list of (H, W) bool masks); None when the N-th person from
        the left is not in this frame. Blobs under a tenth of the largest person's area are not
        counted as people (a hand or a bag apart from its body)."""
        areas = [int(p.sum()) for p in people]
        real = [i for i, a in enumerate(areas) if a >= 0.1 * max(areas)]
        if len(real) < len(people):
            pick = self.choose([people[i] for i in real], shape, map_point)
            return None if pick is None else real[pick]
        centres = [(float(np.nonzero(p)[1].mean()), float(np.nonzero(p)[0].mean())) for p in people]
        if self.spec in ("auto", "largest"):
            return int(np.argmax(areas))
        if self.spec == "center":
            cx, cy = shape[1] / 2, shape[0] / 2
            return int(np.argmin([(x - cx) ** 2 + (y - cy) ** 2 for x, y in centres]))
        if self.index is not None:
            order = sorted(range(len(people)), key=lambda i: centres[i][0])
            return order[self.index] if self.index < len(order) else None
        x, y = map_point(self.point) if map_point is not None else self.point
        xi, yi = int(round(x)), int(round(y))
        for i, p in enumerate(people):
            if 0 <= yi < p.shape[0] and 0 <= xi < p.shape[1] and p[yi, xi]:
                return i
        near = []  # the point within a person's box grown by a quarter: the nearest such person
        for i, p in enumerate(people):
            ys, xs = np.nonzero(p)
            mx, my = 0.25 * (xs.max() - xs.min() + 1), 0.25 * (ys.max() - ys.min() + 1)
            if xs.min() - mx <= x <= xs.max() + mx and ys.min() - my <= y <= ys.max() + my:
                near.append(i)
        if not near:
            return None  # nobody there in this frame
        return min(near, key=lambda i: (centres[i][0] - x) ** 2 + (centres[i][1] - y) ** 2)


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a binary (H, W) mask: (count with the background, labels, stats), as
    cv2.connectedComponentsWithStats numbers them. The labels are 16-bit when the most components the
    mask could hold fit (a pixel apart in each direction: ceil(H/2) ceil(W/2)): the same labels, about
    half the time (BENCHMARKS.md)."""
    h, w = mask.shape
    binary = mask.view(np.uint8) if mask.dtype == bool and mask.flags.c_contiguous else mask.astype(np.uint8)
    ltype = cv2.CV_16U if ((h + 1) // 2) * ((w + 1) // 2) + 1 <= 65535 else cv2.CV_32S
    count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, ltype, cv2.CCL_DEFAULT)
    return count, labels, stats


def split_by_faces(component: np.ndarray, face_centres: list[tuple[float, float]]) -> list[np.ndarray]:
    """One connected blob holding several faces (people touching) -> one mask per face: columns
    are assigned to the nearest face by x (cuts halfway between neighbouring faces)."""
    inside = sorted(x for x, y in face_centres
                    if 0 <= int(y) < component.shape[0] and 0 <= int(x) < component.shape[1]
                    and component[int(y), int(x)])
    if len(inside) < 2:
        return [component]
    cuts = [(a + b) / 2 for a, b in zip(inside, inside[1:])]
    cols = np.arange(component.shape[1])
    part = np.searchsorted(cuts, cols)  # (W,) person index per column
    return [component & (part == k)[None, :] for k in range(len(inside))]


def people_masks(foreground: np.ndarray, min_area: int,
                 face_centres: list[tuple[float, float]] | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Connected components of at least `min_area` pixels, split by faces where several share one.
    Returns (people masks, component labels, component stats)."""
    count, labels, stats = components(foreground)
    people = []
    for i in range(1, count):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        comp = labels == i
        parts = split_by_faces(comp, face_centres) if face_centres else [comp]
        people += [p for p in parts if p.sum() >= min_area]
    return people, labels, stats


GROW = 9  # side of the square the previous subject mask is grown by, to allow for motion


def _grow(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((GROW, GROW), np.uint8)).astype(bool)


def select_subject(foreground: np.ndarray, previous: np.ndarray | None, min_area: int,
                   rule: SubjectRule | None = None, face_centres: list[tuple[float, float]] | None = None,
                   map_point=None, grown: np.ndarray | None = None) -> np.ndarray:
    """Binary (H, W) foreground -> binary mask of the main subject (rule in the module docstring).
    `face_centres` (working pixels) split blobs that hold several people. `grown`, when given, is the
    previous subject already grown (`_grow`) and says there was one, even where this part of the
    frame does not show it (`previous` is then not read)."""
    if grown is None and previous is not None and previous.any():
        grown = _grow(previous)
    if face_centres:
        people, labels, stats = people_masks(foreground, min_area, face_centres)
        if not people:
            return np.zeros_like(foreground, dtype=bool)
        if grown is not None:
            overlaps = [int((p & grown).sum()) for p in people]
            if max(overlaps) > 0:
                return people[int(np.argmax(overlaps))]
            return np.zeros_like(foreground, dtype=bool)  # lost: the caller looks at the whole frame
        pick = (rule or SubjectRule()).choose(people, foreground.shape, map_point)
        return people[pick] if pick is not None else np.zeros_like(foreground, dtype=bool)
    count, labels, stats = components(foreground)
    if count <= 1:
        return np.zeros_like(foreground, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    candidates = [i + 1 for i in range(count - 1) if areas[i] >= min_area]
    if not candidates:
        return np.zeros_like(foreground, dtype=bool)
    chosen = None
    if grown is not None:
        overlap = np.bincount(labels[grown].ravel(), minlength=count)
        best = max(candidates, key=lambda i: overlap[i])
        if overlap[best] > 0:
            chosen = best
    if chosen is None and rule is not None and rule.needs_people:
        if grown is not None:
            return np.zeros_like(foreground, dtype=bool)  # lost: the caller looks at the whole frame
        pick = rule.choose([labels == i for i in candidates], foreground.shape, map_point)
        if pick is None:
            return np.zeros_like(foreground, dtype=bool)
        chosen = candidates[pick]
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


def crop_square(rgb: np.ndarray, roi: tuple[int, int, int, int], view: bool = False) -> np.ndarray:
    """The ROI of `rgb`, zero-padded where it leaves the frame; with `view`, a view of `rgb` (no copy)
    when it lies inside."""
    x0, y0, x1, y1 = roi
    h, w = rgb.shape[:2]
    if view and x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return rgb[y0:y1, x0:x1]
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


MERGE_GROWTH = 1.2  # a tracked subject growing more than this from one frame to the next merged with someone
MERGE_MARGIN = 0.2  # ... and keeps what lies within the previous box grown by this fraction each side


class SubjectTracker:
    """Segments the main subject frame by frame, zooming in on it.

    Person segmenters built for selfies (MediaPipe's) return blobs when the person is small in a
    wide frame. So after the first frame the segmenter sees a square crop around the previous
    subject box (`roi_expand` times its longer side, resized to `roi_input` pixels), and its answer
    is pasted back; the full frame is used again whenever the subject is lost. Segmenters that
    do not support crops (`supports_roi = False`, e.g. ground-truth masks) see the full frame.
    """

    def __init__(self, segmenter: Segmenter, threshold: float, min_area: int, roi: bool = True,
                 roi_expand: float = 1.4, roi_input: int = 256, rule: SubjectRule | None = None, faces=None,
                 seeder=None):
        """`rule` picks the subject among several people when there is no previous subject; `faces`
        (frame -> list of face centres), when given, tells touching people apart; `seeder` (frame ->
        a person's box or None, e.g. `PoseSeeder`) is asked where to zoom in when the whole frame
        shows no one."""
        self.segmenter, self.seeder = segmenter, seeder
        self.rule, self.faces = rule or SubjectRule(), faces
        self.map_point = None  # source pixels -> frame pixels, for a point rule (set per video)
        self.threshold, self.min_area = threshold, min_area
        self.roi = roi and segmenter.supports_roi
        self.roi_expand, self.roi_input = roi_expand, roi_input
        self.previous: np.ndarray | None = None
        self._previous_box: np.ndarray | None = None  # tight_box(previous), kept with it
        self.last_roi: tuple[int, int, int, int] | None = None
        self.last_box: np.ndarray | None = None  # tight_box of the subject the last call returned
        self._apart: tuple[np.ndarray, int] | None = None  # (box, area) from before someone merged in

    def _segment_roi(self, rgb: np.ndarray, index: int, roi: tuple[int, int, int, int]) -> np.ndarray:
        crop = crop_square(rgb, roi, view=True)
        side = crop.shape[0]
        small = cv2.resize(crop, (self.roi_input, self.roi_input),
                           interpolation=cv2.INTER_AREA if side > self.roi_input else cv2.INTER_LINEAR)
        prob = cv2.resize(self.segmenter.segment(small, index), (side, side), interpolation=cv2.INTER_LINEAR)
        return paste_square(prob, roi, rgb.shape[:2])

    def _select_in_roi(self, prob: np.ndarray, roi: tuple[int, int, int, int], previous: np.ndarray | None,
                       centres) -> np.ndarray:
        """`select_subject` on the part of the frame the ROI covers: `prob` is zero outside it, so every
        component lies inside and the choice is the one made on the whole frame (the same mask;
        components are numbered in the same scan order), at the cost of the ROI's pixels only."""
        h, w = prob.shape
        x0, y0, x1, y1 = max(0, roi[0]), max(0, roi[1]), min(w, roi[2]), min(h, roi[3])
        if centres is not None or previous is None or not previous.any() or x1 <= x0 or y1 <= y0:
            # a choice by the rule (whole-frame coordinates) or among faces: on the whole frame
            return select_subject(prob >= self.threshold, previous, self.min_area, self.rule, centres,
                                  self.map_point)
        # with a previous subject the rule's coordinates are never used; its grown mask is taken from
        # a window wider by the dilation's reach, so what grows in from outside the ROI counts too
        r = GROW // 2
        gx0, gy0, gx1, gy1 = max(0, x0 - r), max(0, y0 - r), min(w, x1 + r), min(h, y1 + r)
        grown = _grow(previous[gy0:gy1, gx0:gx1])[y0 - gy0:y1 - gy0, x0 - gx0:x1 - gx0]
        window = (slice(y0, y1), slice(x0, x1))
        part = select_subject(prob[window] >= self.threshold, None, self.min_area, self.rule, grown=grown)
        subject = np.zeros((h, w), bool)
        subject[window] = part
        return subject

    def _keep_apart(self, subject: np.ndarray) -> np.ndarray:
        """The tracked subject grown by more than MERGE_GROWTH in one frame has merged with someone who
        came to touch or overlap them (one blob): while the blob stays that large, only its part within
        the subject's box from before the merge, grown by MERGE_MARGIN each side, is kept."""
        area = int(subject.sum())
        if self._apart is None:
            before = int(self.previous.sum())
            if before == 0 or area <= MERGE_GROWTH * before:
                return subject
            self._apart = (self._previous_box, before)
        (x0, x1, y0, y1), before = self._apart
        if area <= MERGE_GROWTH * before:  # apart again
            self._apart = None
            return subject
        mx, my = MERGE_MARGIN * (x1 - x0), MERGE_MARGIN * (y1 - y0)
        near = np.zeros_like(subject)
        near[max(0, int(y0 - my)):max(0, int(np.ceil(y1 + my))), max(0, int(x0 - mx)):max(0, int(np.ceil(x1 + mx)))] = True
        return subject & near

    def __call__(self, rgb: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame -> (probability map, subject mask), both (H, W); the subject's tight box is left in
        `last_box` (None when there is no subject)."""
        from .location import tight_box

        self.last_roi = None
        prob = subject = None
        centres = self.faces(rgb) if (self.faces is not None and self.rule.needs_people) else None
        box = self._previous_box if (self.roi and self.previous is not None) else None
        if box is not None:
            roi = roi_square(box, self.roi_expand, self.roi_input // 2)
            prob = self._segment_roi(rgb, index, roi)
            subject = self._keep_apart(self._select_in_roi(prob, roi, self.previous, centres))
            self.last_roi = roi
        if subject is None or not subject.any():
            self._apart = None
            prob = self.segmenter.segment(rgb, index)
            subject = select_subject(prob >= self.threshold, None, self.min_area, self.rule, centres, self.map_point)
            self.last_roi = None
            box = tight_box(subject)
            if box is None and self.roi and self.seeder is not None:
                # no one seen whole-frame: a full-body detector says where to look (in zoomed tiles too
                # until the subject has been found once: the clip's first frames)
                box = self.seeder(rgb, tiles=self.previous is None)
            if self.roi and box is not None:
                # Zoom in twice from the full-frame guess, which is coarse for small people.
                for _ in range(2):
                    roi = roi_square(box, self.roi_expand, self.roi_input // 2)
                    p = self._segment_roi(rgb, index, roi)
                    s = self._select_in_roi(p, roi, subject, centres)
                    if not s.any():
                        break
                    prob, subject, box, self.last_roi = p, s, tight_box(s), roi
        self.last_box = tight_box(subject)
        if self.last_box is not None:
            self.previous, self._previous_box = subject, self.last_box
        return prob, subject
