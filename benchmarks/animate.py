"""Generation speed at the tiny config (animate): seconds per generated frame and the share
of time in cues, transformer and codec.

The embedded demo model (4 layers, dim 128, 64x64, windows of 9 frames every 4, 25 DDIM steps)
animates (a) a 33-frame puppet clip with ground-truth masks, (b) the bundled real clip (45 frames,
MediaPipe cues at 64x64, with audio). Median of --runs runs; the share is of the summed stage times.

  .venv/bin/python benchmarks/animate.py [--runs 3] [--steps 25]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


from _util import peak_rss_mib_of  # before cv2 is imported: it keeps the start environment


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=25)
    args = ap.parse_args()
    from directanimator.assets import ASTRONAUT, WALK_VIDEO
    from directanimator.cues.detectors import Detectors
    from directanimator.demo import puppet_case
    from directanimator.pipeline import DirectAnimatorPipeline
    from directanimator.video import VideoWriter

    pipe = DirectAnimatorPipeline.from_pretrained(None)
    reference, driving, _, _ = puppet_case()
    tmp = Path(tempfile.mkdtemp())
    drv = tmp / "driving.mp4"
    with VideoWriter(drv, 15, 64, 64, crf=12) as w:
        for f in driving.frames:
            w.write(f)
    cases = {
        "puppet_33_frames_gt_masks": lambda out: pipe(
            reference.frames[0], drv, out, steps=args.steps, progress=False,
            **Detectors.from_annotations({"masks": driving.masks, "face_boxes": driving.face_boxes},
                                         reference).kwargs()),
        "real_45_frames_mediapipe": lambda out: pipe(ASTRONAUT, WALK_VIDEO, out, steps=args.steps, progress=False),
    }
    result = {"steps": args.steps, "runs": args.runs, "window": pipe.config.model.frames}
    # peak memory of the whole job in a fresh process, for a driving video and one 4x longer; first, before
    # this process's timing runs (measured after them, the cue job's children peaked higher, equally for
    # both lengths: benchmarks/cues.py)
    code = ("from pathlib import Path; "
            "from tests.pipeline.test_animate import gt_pipeline_run; "
            "from directanimator.pipeline import DirectAnimatorPipeline; "
            f"gt_pipeline_run(DirectAnimatorPipeline.from_pretrained(None), Path({str(tmp)!r}), {{n}}, steps=2, name='m{{n}}')")
    result["peak_rss_mib"] = {f"{n}_frames": round(peak_rss_mib_of(code.format(n=n))) for n in (33, 132)}
    for name, job in cases.items():
        per_frame, shares = [], []
        for r in range(args.runs):
            t = time.perf_counter()
            res = job(tmp / f"{name}_{r}.mp4")
            wall = time.perf_counter() - t
            per_frame.append(wall / res.num_frames)
            total = sum(res.seconds.values())
            shares.append({k: v / total for k, v in res.seconds.items()})
        result[name] = {
            "frames": res.num_frames, "windows": res.windows,
            "seconds_per_frame": round(statistics.median(per_frame), 4),
            "share": {k: round(statistics.median(s[k] for s in shares), 3) for k in shares[0]},
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
