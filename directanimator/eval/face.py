"""Face metrics (paper 4.1, A.4) with dlib's embedded models (dlib-bin + face_recognition_models).

The paper uses ArcFace embeddings and DWPose/68-point landmarks. The embedded default here is
dlib's face-recognition ResNet (128-d, "dlib-resnet-v1") and its 68-point shape predictor; every
report names the model. With `arcface=PATH` (an InsightFace ArcFace ONNX such as w600k_r50.onnx, run
by OpenCV's DNN module) the embeddings are ArcFace's instead: the face is aligned to ArcFace's 112x112
five-point template (eye centres, nose tip, mouth corners from the 68 landmarks) by a similarity
transform, normalised to [-1, 1], RGB. Faces are found with dlib's HOG detector on the frame upscaled so its
shorter side is at least 512 px (small faces in full-body frames are otherwise missed).

  FIS  mean over generated frames with a face of cos(e(generated_t), e(reference)); higher better
  FTS  mean over adjacent generated frames that both have a face of cos(e_t, e_{t+1})
  FLC  mean over frames with a face in both driving and generated of the mean distance between the
       68 landmarks, each set centred on its mean and divided by its outer inter-ocular distance
       (points 36 and 45); lower better, 0 for a video against itself

Frames without a detection are left out of each mean; the coverage (fraction of frames used) is
reported beside each value, and a metric with no usable frame is reported as missing (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np

MODEL_NAME = "dlib-resnet-v1 (face_recognition_models), HOG detector, 68-point shape predictor"
# InsightFace's 112x112 alignment template: left eye, right eye, nose tip, left and right mouth corner
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]], np.float32)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    return np.stack([landmarks68[36:42].mean(axis=0), landmarks68[42:48].mean(axis=0), landmarks68[30],
                     landmarks68[48], landmarks68[54]]).astype(np.float32)


class ArcFaceONNX:
    """ArcFace embeddings from a local ONNX file through OpenCV's DNN module (no onnxruntime)."""

    def __init__(self, path: str | Path):
        from .onnx import load_onnx

        self.net = load_onnx(path, "ArcFace", "InsightFace's w600k_r50.onnx")
        self.name = f"ArcFace ONNX ({Path(path).name}), aligned by dlib 68-point landmarks"

    def aligned(self, rgb: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        m, _ = cv2.estimateAffinePartial2D(five_points(landmarks68), ARCFACE_TEMPLATE, method=cv2.LMEDS)
        return cv2.warpAffine(rgb, m, (112, 112), borderValue=0)

    def __call__(self, rgb: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        crop = self.aligned(rgb, landmarks68)
        blob = cv2.dnn.blobFromImage(crop, 1.0 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=False)
        self.net.setInput(blob)
        return self.net.forward().reshape(-1).astype(np.float32)


def _model_file(name: str) -> str:
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        from ..errors import InputError

        raise InputError("face metrics need the face_recognition_models package (pip install face_recognition_models)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "models" / name)


@dataclass
class Face:
    landmarks: np.ndarray  # (68, 2) in frame pixels
    embedding: np.ndarray  # (128,)


class DlibFaces:
    name = MODEL_NAME

    def __init__(self, min_side: int = 512, arcface: str | Path | None = None):
        import dlib

        self.arcface = ArcFaceONNX(arcface) if arcface else None
        if self.arcface is not None:
            self.name = self.arcface.name
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(_model_file("shape_predictor_68_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))
        self.min_side = min_side
        self._dlib = dlib

    def __call__(self, rgb: np.ndarray) -> Face | None:
        """The largest face of an (H, W, 3) uint8 RGB frame, or None."""
        scale = max(1.0, self.min_side / min(rgb.shape[:2]))
        img = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale > 1 else rgb
        img = np.ascontiguousarray(img)
        dets = self.detector(img, 0)
        if not dets:
            return None
        d = max(dets, key=lambda r: r.width() * r.height())
        shape = self.shape(img, d)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
        if self.arcface is not None:
            emb = self.arcface(img, pts)
        else:
            emb = np.array(self.encoder.compute_face_descriptor(img, shape), np.float32)
        return Face(pts / scale, emb)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def normalised_landmarks(pts: np.ndarray) -> np.ndarray:
    iod = float(np.linalg.norm(pts[45] - pts[36]))
    return (pts - pts.mean(axis=0)) / max(iod, 1e-6)


def face_metrics(generated: list[Face | None], reference: Face | None,
                 driving: list[Face | None] | None, model_name: str = MODEL_NAME) -> dict:
    n = len(generated)
    out: dict = {"face_model": model_name}
    fis = [_cos(g.embedding, reference.embedding) for g in generated if g is not None] if reference else []
    out["FIS"] = float(np.mean(fis)) if fis else None
    out["FIS_coverage"] = len(fis) / n if n else 0.0
    fts = [_cos(a.embedding, b.embedding) for a, b in zip(generated, generated[1:]) if a is not None and b is not None]
    out["FTS"] = float(np.mean(fts)) if fts else None
    out["FTS_coverage"] = len(fts) / max(1, n - 1)
    if driving is not None:
        flc = [float(np.linalg.norm(normalised_landmarks(g.landmarks) - normalised_landmarks(d.landmarks), axis=1).mean())
               for g, d in zip(generated, driving) if g is not None and d is not None]
        out["FLC"] = float(np.mean(flc)) if flc else None
        out["FLC_coverage"] = len(flc) / n if n else 0.0
    return out
