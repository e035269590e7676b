"""Skeleton maps: the pose-cue mode `skeleton`, what skeleton-driven animators (Animate Anyone,
MimicMotion, StableAnimator, ...) feed instead of the raw video, and the paper's S5 arm (Table 3).

The 17 COCO body keypoints are drawn as coloured sticks on black, DWPose/OpenPose style (one colour
per limb around the hue wheel, a dot per joint), after moving them onto the reference person with the
Location Cue's alignment (eqs 9-11), so a skeleton and a Location Cue of one clip line up.

Keypoints come from a `KeypointSource`: MediaPipe Pose on real videos (33 landmarks mapped to
COCO-17, `MEDIAPIPE_TO_COCO`), or given ones (`GivenKeypoints`, the puppet world's ground truth),
optionally with the errors skeleton detectors make on the paper's Figure 1 (`corrupt_keypoints`):
left and right confused when the person faces away, occluded limbs dropped or misplaced.
"""

from __future__ import annotations

import colorsys
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

COCO_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle")
# MediaPipe Pose's 33 landmarks -> COCO-17 (the same body points under MediaPipe's numbering)
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# OpenPose's limb order on COCO joints (neck-free): legs, hips, torso, arms, head
COCO_LIMBS = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
LEFT_RIGHT = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def limb_colours(n: int = len(COCO_LIMBS)) -> list[tuple[int, int, int]]:
    """One saturated RGB colour per limb, evenly around the hue wheel (as OpenPose draws)."""
    return [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(k / n, 1.0, 1.0)) for k in range(n)]


COLOURS = limb_colours()


def draw_skeleton(keypoints: np.ndarray, size: int, thickness: int | None = None) -> np.ndarray:
    """(17, 3) x, y (pixels), visibility (> 0 = drawn) -> (size, size, 3) uint8 RGB on black."""
    canvas = np.zeros((size, size, 3), np.uint8)
    if keypoints is None:
        return canvas
    t = thickness or max(1, int(round(size / 128)))
    shift = 4
    pts = np.round(np.asarray(keypoints[:, :2], np.float64) * (1 << shift)).astype(np.int64)
    vis = np.asarray(keypoints[:, 2]) > 0
    for (a, b), colour in zip(COCO_LIMBS, COLOURS):
        if vis[a] and vis[b]:
            cv2.line(canvas, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), colour, t, cv2.LINE_AA,
                     shift)
    for k in np.nonzero(vis)[0]:
        cv2.circle(canvas, tuple(int(v) for v in pts[k]), int((t + 1) / 2 * (1 << shift)), COLOURS[k % len(COLOURS)],
                   -1, cv2.LINE_AA, shift)
    return canvas


def corrupt_keypoints(keypoints: np.ndarray, rng: np.random.Generator, drop: float = 0.5,
                      misplace: float = 0.15) -> np.ndarray:
    """The errors of a skeleton detector (the paper's Figure 1) on true keypoints (T, 17, 3) with
    visibility 2 = visible, 1 = occluded, 0 = outside:
      * facing away (the nose occluded, both shoulders visible): left and right swapped, as detectors
        trained on front views do;
      * each occluded keypoint dropped with probability `drop`, else misplaced by up to `misplace`
        times the person's height.
    Visible keypoints of front views are left exact."""
    out = np.array(keypoints, np.float32, copy=True)
    for t in range(len(out)):
        f = out[t]
        if f[0, 2] == 1 and f[5, 2] > 0 and f[6, 2] > 0:
            for a, b in LEFT_RIGHT:
                f[[a, b], :2] = f[[b, a], :2]
        seen = f[f[:, 2] > 0]
        height = float(np.ptp(seen[:, 1])) if len(seen) > 1 else 1.0
        for k in np.nonzero(np.asarray(keypoints[t][:, 2]) == 1)[0]:
            if rng.random() < drop:
                f[k, 2] = 0
            else:
                f[k, :2] += rng.uniform(-misplace, misplace, 2) * height
    return out


MODEL_NAME = "MediaPipe Pose (33 landmarks, model_complexity 1)"


class MediaPipePose:
    name = MODEL_NAME

    def __init__(self):
        import mediapipe as mp

        from ._native import quiet_native_stderr

        with quiet_native_stderr():
            self._pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1,
                                                min_detection_confidence=0.5)
            self._pose.process(np.zeros((64, 64, 3), np.uint8))  # the graph starts (and logs) here
        self._seen_body = False

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """(33, 3): x, y in pixels and visibility; None without a body."""
        if self._seen_body:
            res = self._pose.process(np.ascontiguousarray(rgb))
        else:  # the landmark stage logs its set-up when it first sees a body: not on our stderr
            from ._native import quiet_native_stderr

            with quiet_native_stderr():
                res = self._pose.process(np.ascontiguousarray(rgb))
            self._seen_body = res.pose_landmarks is not None
        if res.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        return np.array([[p.x * w, p.y * h, p.visibility] for p in res.pose_landmarks.landmark], np.float32)

    def close(self) -> None:
        self._pose.close()


@runtime_checkable
class KeypointSource(Protocol):
    name: str

    def __call__(self, rgb: np.ndarray, index: int) -> np.ndarray | None:
        """COCO-17 (17, 3) in the frame's pixels (x, y, visibility > 0 = found); None = no body."""
        ...

    def close(self) -> None: ...


class MediaPipeKeypoints:
    """MediaPipe Pose (the bundled model_complexity 1, video mode) mapped to COCO-17; a landmark
    counts as found when MediaPipe's visibility is at least `min_visibility`."""

    name = "MediaPipe Pose -> COCO-17"

    def __init__(self, min_visibility: float = 0.5):
        self.pose = MediaPipePose()
        self.min_visibility = min_visibility

    def __call__(self, rgb: np.ndarray, index: int) -> np.ndarray | None:
        lm = self.pose(rgb)
        if lm is None:
            return None
        coco = lm[list(MEDIAPIPE_TO_COCO)].copy()
        coco[:, 2] = np.where(coco[:, 2] >= self.min_visibility, 2.0, 0.0)
        return coco

    def close(self) -> None:
        self.pose.close()


class GivenKeypoints:
    """Keypoints known in advance (T, 17, 3) in working pixels, e.g. the puppet world's ground truth;
    with `errors`, passed through `corrupt_keypoints` (seeded) first."""

    name = "given keypoints"

    def __init__(self, keypoints: np.ndarray, errors: bool = False, seed: int = 0):
        kp = np.asarray(keypoints, np.float32)
        self.keypoints = corrupt_keypoints(kp, np.random.default_rng(seed)) if errors else kp
        if errors:
            self.name = "given keypoints with skeleton-detector errors"

    def __call__(self, rgb: np.ndarray, index: int) -> np.ndarray | None:
        if index >= len(self.keypoints):
            return None
        k = self.keypoints[index]
        return k if (k[:, 2] > 0).any() else None

    def close(self) -> None:
        pass
