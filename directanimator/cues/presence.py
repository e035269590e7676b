"""Is there a person in the reference photo at all? A confidence from MediaPipe's person detectors
(the pose landmark model, static-image mode, and the full-range face detector), taken on the photo
itself at a detection-friendly size (its longer side scaled to 512 px) so the answer is the same at
every working size.

Segmentation alone cannot tell: the selfie model labels 92% of a cat photo and 21% of a coffee cup
"person". Measured on the test photos (tests/data/, the bundled astronaut): people 0.98-1.00 (pose),
0.87-0.90 (face); a cup, a cat, a launch scene 0 (no pose, no face). The threshold
(`cues.segmentation.min_person_confidence`, 0.5) sits in that gap; the puppets of the puppet world score
0.98-1.00 too. A limit, measured: both detectors need the face (MediaPipe's pose detector is
anchored on it), so a person seen from behind, or with the face hidden, scores 0 as well; the error
says how to skip the check for such a photo.
"""

from __future__ import annotations

import cv2
import numpy as np

DETECT_SIDE = 512


def person_confidence(rgb: np.ndarray, enough: float | None = None) -> float:
    """max(mean visibility of the 8 most visible pose landmarks, best face-detection score), 0 if
    neither finds anything. With `enough`, the face detector runs first and a face scoring at least
    `enough` is the answer without the pose model (about 80 ms saved per photo on 2 cores): the
    decision `>= enough` is the same, the returned score then only a lower bound of the max."""
    import mediapipe as mp

    from ._native import quiet_native_stderr

    h, w = rgb.shape[:2]
    s = DETECT_SIDE / max(h, w)
    image = np.ascontiguousarray(cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC))
    score = 0.0
    with quiet_native_stderr():
        with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.3) as faces:
            det = faces.process(image)
        for d in det.detections or []:
            score = max(score, float(d.score[0]))
        if enough is not None and score >= enough:
            return score
        with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.3) as pose:
            res = pose.process(image)
    if res.pose_landmarks is not None:
        vis = np.sort([lm.visibility for lm in res.pose_landmarks.landmark])
        score = max(score, float(vis[-8:].mean()))
    return score
