"""Full-body people small in the frame: how many frames the subject tracker finds the person in, and
how good the mask is, with and without MediaPipe Pose seeding (cues.segmentation.seed_with_pose).

    .venv/bin/python benchmarks/full_body.py [--out results.json]

The clips: the bundled walking clip (256 x 256, 45 frames, the person filling the frame) pasted into
the middle of grey portrait and landscape frames (a phone dance video's framing: the body 40% down to
13% of the frame's height), played from its first frame and cut from frame 20 (tracking must start
on the cut's own first frames). The reference mask of each frame is the selfie segmenter's answer on
the walking clip's own frame, where the person is large (checked by eye on the preview of the
bundled clip), pasted at the same place. The tracker runs as the cue job runs it (frames
letterboxed to cues.segmentation.detect_size, ROI tracking on), one frame after another. Reported
per clip and setting: frames with a subject, mean IoU with the reference mask over the frames where
either has a person, and the tracker's milliseconds per frame (one run, machine named).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from directanimator.machine import machine

from directanimator.assets import WALK_VIDEO
from directanimator.config import CuesConfig
from directanimator.cues.segment import MediaPipeSegmenter, PoseSeeder, SubjectRule, SubjectTracker
from directanimator.video import Letterbox, iter_frames

FRAMINGS = ((640, 360), (960, 540), (1280, 720), (360, 640), (540, 960))  # (height, width)
STARTS = (0, 20)


def clip(frames: list[np.ndarray], masks: list[np.ndarray], height: int, width: int):
    """The walking clip and its reference masks pasted into the middle of a grey frame."""
    y, x = (height - 256) // 2, (width - 256) // 2
    for f, m in zip(frames, masks):
        canvas = np.full((height, width, 3), 128, np.uint8)
        canvas[y:y + 256, x:x + 256] = f
        mask = np.zeros((height, width), np.float32)
        mask[y:y + 256, x:x + 256] = m
        yield canvas, mask


def track(frames, seeded: bool, cfg: CuesConfig) -> dict:
    seg = cfg.segmentation
    segmenter = MediaPipeSegmenter(seg.model_selection)
    seeder = PoseSeeder() if seeded else None
    tracker = SubjectTracker(segmenter, seg.threshold, 0, roi=seg.roi, roi_expand=seg.roi_expand,
                             rule=SubjectRule(seg.subject), seeder=seeder)
    found, ious, seconds = 0, [], 0.0
    try:
        for i, (rgb, truth) in enumerate(frames):
            lb = Letterbox.fit(rgb.shape[1], rgb.shape[0], min(max(rgb.shape[:2]), seg.detect_size))
            img, want = lb.apply(rgb), lb.apply(truth) >= 0.5
            t0 = time.perf_counter()
            _, subject = tracker(img, i)
            seconds += time.perf_counter() - t0
            found += bool(subject.any())
            if subject.any() or want.any():
                ious.append((subject & want).sum() / max(1, (subject | want).sum()))
    finally:
        segmenter.close()
        if seeder is not None:
            seeder.close()
    n = i + 1
    return {"frames": n, "found": found, "iou": round(float(np.mean(ious)), 3) if ious else None,
            "ms_per_frame": round(1000 * seconds / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    cfg = CuesConfig()
    frames = list(iter_frames(WALK_VIDEO))
    own = MediaPipeSegmenter(cfg.segmentation.model_selection)
    masks = [(own.segment(f, -1) >= cfg.segmentation.threshold).astype(np.float32) for f in frames]
    own.close()
    rows = []
    for height, width in FRAMINGS:
        for start in STARTS:
            row = {"frame": f"{width} x {height}", "body_height": round(256 / height, 2), "start": start}
            for seeded in (False, True):
                got = track(list(clip(frames[start:], masks[start:], height, width)), seeded, cfg)
                row["pose_seeding" if seeded else "selfie_only"] = got
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"machine": machine(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print("| frame | body / frame height | from frame | found (selfie only) | found (pose seeding) | "
          "IoU (selfie only) | IoU (pose seeding) | ms/frame (selfie only / seeding) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["selfie_only"], r["pose_seeding"]
        print(f"| {r['frame']} | {r['body_height']:.2f} | {r['start']} | {a['found']}/{a['frames']} | "
              f"{b['found']}/{b['frames']} | {a['iou']} | {b['iou']} | {a['ms_per_frame']} / {b['ms_per_frame']} |")


if __name__ == "__main__":
    main()
