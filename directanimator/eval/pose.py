"""Pose Landmark Consistency (PLC, paper A.4) with MediaPipe Pose (embedded; the paper uses DWPose).

  PLC  mean over frames with a body in both driving and generated of the mean distance between the
       landmarks visible (visibility >= 0.5) in both, each set centred on its visible points' mean
       and divided by its torso length (shoulder midpoint to hip midpoint, landmarks 11, 12, 23, 24);
       lower better, 0 for a video against itself. Coverage is reported as for the face metrics.
"""

from __future__ import annotations

import numpy as np

MODEL_NAME = "MediaPipe Pose (33 landmarks, model_complexity 1)"


class MediaPipePose:
    name = MODEL_NAME

    def __init__(self):
        import mediapipe as mp

        from ..cues._native import quiet_native_stderr

        with quiet_native_stderr():
            self._pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1,
                                                min_detection_confidence=0.5)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """(33, 3): x, y in pixels and visibility; None without a body."""
        res = self._pose.process(np.ascontiguousarray(rgb))
        if res.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        return np.array([[p.x * w, p.y * h, p.visibility] for p in res.pose_landmarks.landmark], np.float32)

    def close(self) -> None:
        self._pose.close()


def _normalise(k: np.ndarray, vis: np.ndarray) -> np.ndarray | None:
    torso = np.linalg.norm((k[11, :2] + k[12, :2]) / 2 - (k[23, :2] + k[24, :2]) / 2)
    if torso < 1e-3:
        return None
    return (k[vis, :2] - k[vis, :2].mean(axis=0)) / torso


def plc(generated: list[np.ndarray | None], driving: list[np.ndarray | None]) -> dict:
    ds = []
    for g, d in zip(generated, driving):
        if g is None or d is None:
            continue
        vis = (g[:, 2] >= 0.5) & (d[:, 2] >= 0.5)
        if vis.sum() < 4:
            continue
        a, b = _normalise(g, vis), _normalise(d, vis)
        if a is None or b is None:
            continue
        ds.append(float(np.linalg.norm(a - b, axis=1).mean()))
    n = len(generated)
    return {"PLC": float(np.mean(ds)) if ds else None, "PLC_coverage": len(ds) / n if n else 0.0,
            "pose_model": MODEL_NAME}
