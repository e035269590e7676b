"""Speed of each evaluation metric on CPU, in frames per second.

256x256 frames of a real face (the bundled astronaut photo, shifted frame to frame, so dlib finds a
face in every frame) and the bundled real clip for pose; median of --runs runs. LPIPS runs with
stand-in random weights in the official layout (the speed does not depend on the values); FID and
FVD need the user's TorchScript weights and are timed here only for their Frechet-distance step
(2048-d features of 500 frames).

  .venv/bin/python benchmarks/evaluate.py [--runs 3] [--frames 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch



def timed(fn, runs: int, n: int) -> float:
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return round(statistics.median(rates), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=24)
    args = ap.parse_args()
    from directanimator.assets import ASTRONAUT, WALK_VIDEO
    from directanimator.eval.face import DlibFaces
    from directanimator.eval.features import LPIPS, feature_stats, frechet_distance
    from directanimator.eval.pixel import l1, psnr, ssim
    from directanimator.eval.pose import MediaPipePose
    from directanimator.video import iter_frames, load_image

    n = args.frames
    img = cv2.resize(load_image(ASTRONAUT), (256, 256))
    a = np.stack([np.roll(img, k % 4, axis=1) for k in range(n)])
    b = np.stack([np.roll(img, (k + 1) % 4, axis=0) for k in range(n)])
    walk = [cv2.resize(f, (256, 256)) for f in list(iter_frames(WALK_VIDEO))[:n]]
    faces = DlibFaces()
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    alex = {f"features.{i}.weight": torch.randn(co, ci, k, k) * 0.05 for i, (ci, co, k) in
            zip((0, 3, 6, 8, 10), ((3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)))}
    alex.update({f"features.{i}.bias": torch.zeros(alex[f"features.{i}.weight"].shape[0]) for i in (0, 3, 6, 8, 10)})
    torch.save(alex, tmp / "alex_backbone.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS.CHANNELS)}, tmp / "alex.pth")
    lp = LPIPS(tmp / "alex_backbone.pth", tmp / "alex.pth")

    def pose_run():
        p = MediaPipePose()
        [p(f) for f in walk]
        p.close()

    feats = np.random.default_rng(0).normal(size=(500, 2048))
    stats = feature_stats(feats)
    result = {
        "frame_size": "256x256", "frames": n, "runs": args.runs, "threads": torch.get_num_threads(),
        "fps": {
            "SSIM": timed(lambda: ssim(a, b), args.runs, n),
            "PSNR": timed(lambda: psnr(a, b), args.runs, n),
            "L1": timed(lambda: l1(a, b), args.runs, n),
            "LPIPS (AlexNet)": timed(lambda: lp.frames(a, b), args.runs, n),
            "face: dlib detect + 68 landmarks + embedding (FIS, FTS, FLC per frame)": timed(
                lambda: [faces(f) for f in a], args.runs, n),
            "pose: MediaPipe Pose (PLC per frame)": timed(pose_run, args.runs, n),
        },
        "frechet_distance_2048d_seconds": round(statistics.median(
            [(lambda t: (frechet_distance(*stats, *stats), time.perf_counter() - t)[1])(time.perf_counter())
             for _ in range(args.runs)]), 3),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
