"""Pose Landmark Consistency (PLC, paper A.4) with MediaPipe Pose (embedded) or DWPose (the paper's
choice) from a local ONNX file.

DWPose option (`DWPoseONNX`, e.g. dw-ll_ucoco_384.onnx, run by OpenCV's DNN module): the person box
comes from MediaPipe segmentation (DWPose itself uses a YOLOX detector), enlarged 1.25x, fitted to
the model's 288x384 input at its aspect ratio, normalised with ImageNet mean/std (RGB); the SimCC
outputs (133 whole-body keypoints, split ratio 2) are decoded by argmax and mapped back to the frame.
PLC then uses the 17 COCO body keypoints (torso: shoulders 5, 6 and hips 11, 12).

  PLC  mean over frames with a body in both driving and generated of the mean distance between the
       landmarks visible (visibility >= 0.5) in both, each set centred on its visible points' mean
       and divided by its torso length (shoulder midpoint to hip midpoint, landmarks 11, 12, 23, 24);
       lower better, 0 for a video against itself. Coverage is reported as for the face metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cues.skeleton import MODEL_NAME, MediaPipePose  # noqa: F401 (the pose model lives with the cues)
MEDIAPIPE_TORSO = (11, 12, 23, 24)
COCO_TORSO = (5, 6, 11, 12)


class DWPoseONNX:
    """DWPose / RTMPose whole-body keypoints from a local ONNX file; see the module docstring."""

    input_w, input_h, split = 288, 384, 2.0

    def __init__(self, path: str, threshold: float = 0.3):
        from ..cues.segment import MediaPipeSegmenter
        from .onnx import load_onnx

        self.net = load_onnx(path, "DWPose", "dw-ll_ucoco_384.onnx")
        self.name = f"DWPose ONNX ({Path(path).name}), person box from MediaPipe segmentation"
        self.threshold = threshold
        self.segmenter = MediaPipeSegmenter(0)

    def box_transform(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """2x3 affine from the frame to the model input: the box centred, enlarged 1.25x, at the
        input's aspect ratio."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w, h = (x1 - x0) * 1.25, (y1 - y0) * 1.25
        aspect = self.input_w / self.input_h
        if w / max(h, 1e-6) > aspect:
            h = w / aspect
        else:
            w = h * aspect
        s = self.input_w / w
        return np.array([[s, 0, self.input_w / 2 - s * cx], [0, s, self.input_h / 2 - s * cy]], np.float32)

    def decode(self, simcc_x: np.ndarray, simcc_y: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """(K, Wx), (K, Wy) -> (K, 3) frame x, y and score."""
        x = simcc_x.argmax(axis=1) / self.split
        y = simcc_y.argmax(axis=1) / self.split
        score = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
        s, tx, ty = affine[0, 0], affine[0, 2], affine[1, 2]
        return np.stack([(x - tx) / s, (y - ty) / s, score], axis=1).astype(np.float32)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """(17, 3): COCO body keypoints x, y and a visibility (1 when the score passes the threshold)."""
        import cv2

        mask = self.segmenter.segment(rgb, 0) >= 0.5
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        affine = self.box_transform((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        crop = cv2.warpAffine(rgb, affine, (self.input_w, self.input_h), borderValue=0).astype(np.float32)
        crop = (crop - np.array([123.675, 116.28, 103.53], np.float32)) / np.array([58.395, 57.12, 57.375], np.float32)
        self.net.setInput(crop.transpose(2, 0, 1)[None])
        names = self.net.getUnconnectedOutLayersNames()
        outs = dict(zip(names, self.net.forward(names)))
        sx, sy = (outs[n] for n in sorted(outs, key=lambda n: outs[n].shape[-1]))  # x bins < y bins
        k = self.decode(sx[0], sy[0], affine)[:17]
        k[:, 2] = (k[:, 2] >= self.threshold).astype(np.float32)
        return k

    def close(self) -> None:
        self.segmenter.close()


def _normalise(k: np.ndarray, vis: np.ndarray, torso_idx: tuple[int, int, int, int]) -> np.ndarray | None:
    a, b, c, d = torso_idx
    torso = np.linalg.norm((k[a, :2] + k[b, :2]) / 2 - (k[c, :2] + k[d, :2]) / 2)
    if torso < 1e-3:
        return None
    return (k[vis, :2] - k[vis, :2].mean(axis=0)) / torso


def plc(generated: list[np.ndarray | None], driving: list[np.ndarray | None],
        torso: tuple[int, int, int, int] = MEDIAPIPE_TORSO, model_name: str = MODEL_NAME) -> dict:
    ds = []
    for g, d in zip(generated, driving):
        if g is None or d is None:
            continue
        vis = (g[:, 2] >= 0.5) & (d[:, 2] >= 0.5)
        if vis.sum() < 4:
            continue
        a, b = _normalise(g, vis, torso), _normalise(d, vis, torso)
        if a is None or b is None:
            continue
        ds.append(float(np.linalg.norm(a - b, axis=1).mean()))
    n = len(generated)
    return {"PLC": float(np.mean(ds)) if ds else None, "PLC_coverage": len(ds) / n if n else 0.0,
            "pose_model": model_name}
