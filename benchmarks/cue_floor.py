"""The least work cue extraction does per frame at 512 x 512 on this machine (against a target of 10 ms/frame).

  .venv/bin/python benchmarks/cue_floor.py [--runs 5]

On the frames of benchmarks/cues.py's clip (the bundled real clip letterboxed to 512 x 512, decoded
into memory beforehand), one thread, each piece alone, median over --runs passes of its mean per frame:
one MediaPipe selfie-segmentation call on the whole frame (the job calls it on a tracked crop, no
cheaper), one short-range MediaPipe face detection on a 192 x 192 head-sized crop (the job's first
try), and the three cues as the job computes them (pose: gray + FFT low-pass; face: crop, enlarge
and centre; location: eqs 9-12 warp and grid softening on the person's part of the frame). No
decoding, no subject tracking, no quality statistics, no writing: the sum is a floor under the
job's own figure, and half of it what two cores could reach if every piece ran in parallel with
perfect overlap.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from directanimator.machine import machine
from cues import make_clip

from directanimator.config import CuesConfig
from directanimator.cues.face import MediaPipeFaceDetector, face_cue
from directanimator.cues.location import estimate_alignment, location_masks, tight_box
from directanimator.cues.pose import GaussianLowpass, pose_cue
from directanimator.cues.segment import MediaPipeSegmenter
from directanimator.video import iter_frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # as the job does
    cfg = CuesConfig(size=512)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, 1)
        frames = list(iter_frames(clip))
    seg = MediaPipeSegmenter(cfg.segmentation.model_selection)
    face = MediaPipeFaceDetector(0, cfg.face.min_confidence)
    masks = [seg.segment(f, i) >= 0.5 for i, f in enumerate(frames)]
    boxes = [tight_box(m) for m in masks]
    alignment = estimate_alignment(next(b for b in boxes if b is not None), boxes)
    lowpass = GaussianLowpass(cfg.pose.cutoff_cycles / cfg.size)
    heads = []
    for f, b in zip(frames, boxes):
        x0, y0 = (int(b[0]), int(b[1])) if b is not None else (160, 0)
        x0, y0 = min(max(0, x0), 512 - 192), min(max(0, y0), 512 - 192)
        heads.append(np.ascontiguousarray(f[y0:y0 + 192, x0:x0 + 192]))
    face_box = np.array([200.0, 40.0, 280.0, 140.0])

    pieces = {
        "segmentation (MediaPipe, whole frame)": lambda i: seg.segment(frames[i], i),
        "face detection (MediaPipe short range, 192 px crop)": lambda i: face.detect(heads[i]),
        "pose cue (gray + FFT low-pass)": lambda i: pose_cue(frames[i], masks[i], "gray_lowpass", lowpass),
        "face cue (crop, enlarge, centre)": lambda i: face_cue(frames[i], face_box, cfg.face.margin, cfg.size,
                                                                cfg.face.enlarge_and_center),
        "location cue (warp, grid)": lambda i: location_masks(masks[i], face_box, alignment, cfg.location.mode,
                                                             cfg.location.grid_cell, boxes[i]),
    }
    result = {}
    for name, fn in pieces.items():
        per_run = []
        for _ in range(args.runs):
            t = time.perf_counter()
            for i in range(len(frames)):
                fn(i)
            per_run.append(1000 * (time.perf_counter() - t) / len(frames))
        result[name] = round(statistics.median(per_run), 2)
    seg.close()
    face.close()
    floor = round(sum(result.values()), 2)
    print(json.dumps({"machine": machine(), "frames": len(frames), "runs": args.runs, "ms_per_frame": result,
                      "floor_one_thread": floor, "floor_two_cores_perfect_overlap": round(floor / 2, 2),
                      "target": 10.0}, indent=2))


if __name__ == "__main__":
    main()
