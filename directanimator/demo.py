"""`make demo`: animate a held-out puppet, score it against the ground truth, and run the cue
extractor on a real clip.

1. The puppet world renders a reference photo of a held-out identity B and a driving clip of another
   held-out identity A performing a held-out motion M; it also renders the true answer, B performing
   M in B's scene. Puppets are cartoons: MediaPipe finds no face on them, so their cues use the
   world's ground-truth masks and face boxes (the `GivenMasks` / `GivenFaceBoxes` seams).
2. The embedded demo model (directanimator/assets/demo_model, trained by experiments/demo_model.py)
   animates B with A's motion: out/demo.mp4 and out/demo_side_by_side.mp4
   (reference | driving | pose cue | result), and out/demo_strip.png (driving, result, true answer).
3. SSIM, PSNR, person-region and moving-region PSNR of the result against the ground truth, next to
   the three trivial answers on the same case (eval/puppet.py: the reference held still, the driving
   video pasted, a silhouette fill): a number means nothing without them.
4. `directanimator cues` on the bundled real clip with a real reference photo: out/demo_cues/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .assets import ASTRONAUT, WALK_VIDEO
from .cli import main as cli_main

# held-out identities and motions of the demo model's puppet world (world_ids(40, 25, seed=7))
WORLD = {"identities": 40, "motions": 25, "seed": 7}


def puppet_case(frames: int = 33, size: int = 64):
    from .synth.render import render_clip
    from .synth.world import world_ids

    _, test_ids, _, test_motions = world_ids(WORLD["identities"], WORLD["motions"], WORLD["seed"])
    b, a = test_ids[0], test_ids[1]
    motion, ref_motion = test_motions[0], test_motions[1]
    scene_b, scene_a = 7_000_001, 7_000_002
    reference = render_clip(b, ref_motion, scene_b, 1, size)
    driving = render_clip(a, motion, scene_a, frames, size)
    truth = render_clip(b, motion, scene_b, frames, size)
    return reference, driving, truth, {"reference_identity": b, "driving_identity": a, "motion": motion}


def animate_puppet(out_dir: Path, steps: int | None = None) -> dict:
    from .cues.detectors import Detectors
    from .eval.puppet import TRIVIAL_NAMES, puppet_metrics, trivial_answers
    from .pipeline import DirectAnimatorPipeline
    from .video import VideoWriter, iter_frames, save_image

    reference, driving, truth, ids = puppet_case()
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_path, drv_path = out_dir / "demo_reference.png", out_dir / "demo_driving.mp4"
    save_image(ref_path, reference.frames[0])
    with VideoWriter(drv_path, 15, 64, 64, crf=12) as w:
        for f in driving.frames:
            w.write(f)
    pipe = DirectAnimatorPipeline.from_pretrained(None)
    t = time.perf_counter()
    result = pipe(reference.frames[0], drv_path, out_dir / "demo.mp4", steps=steps,
                  side_by_side=out_dir / "demo_side_by_side.mp4",
                  progress=False,
                  **Detectors.from_annotations({"masks": driving.masks, "face_boxes": driving.face_boxes},
                                               reference).kwargs())
    seconds = time.perf_counter() - t
    generated = np.stack(list(iter_frames(out_dir / "demo.mp4")))
    ref_mask = reference.masks[0].astype(bool)
    ref = reference.frames[0]
    rows = {"embedded demo model": puppet_metrics(generated, truth.frames, truth.masks, ref_mask, ref)}
    for name, video in trivial_answers(ref, ref_mask, driving.frames, driving.masks).items():
        rows[TRIVIAL_NAMES[name]] = puppet_metrics(video, truth.frames, truth.masks, ref_mask, ref)
    rows = {k: {m: None if v is None else round(v, 4) for m, v in r.items()} for k, r in rows.items()}
    save_image(out_dir / "demo_strip.png", frame_strip(reference.frames[0], driving.frames, generated, truth.frames))
    return {**ids, "frames": result.num_frames, "windows": result.windows, "seconds": round(seconds, 2),
            "metrics": rows}


def frame_strip(reference: np.ndarray, driving: np.ndarray, generated: np.ndarray, truth: np.ndarray,
                count: int = 6, zoom: int = 2) -> np.ndarray:
    """Rows: driving, result, true answer at `count` time points; the reference photo on the left
    of the result row (white elsewhere). Pixels enlarged `zoom` times."""
    idx = np.linspace(0, len(generated) - 1, count).round().astype(int)
    blank = np.full_like(reference, 255)
    rows = [np.hstack([blank, *driving[idx]]), np.hstack([reference, *generated[idx]]), np.hstack([blank, *truth[idx]])]
    img = np.vstack(rows)
    return np.repeat(np.repeat(img, zoom, axis=0), zoom, axis=1)


def format_scores(scores: dict) -> list[str]:
    lines = [f"{'':46s} {'SSIM':>6s} {'PSNR':>7s} {'person':>7s} {'moving':>7s} {'motion IoU':>10s}"]
    for name, m in scores["metrics"].items():
        lines.append(f"  {name:44s} {m['ssim']:6.3f} {m['psnr']:7.2f} {m['person_psnr']:7.2f} {m['moving_psnr']:7.2f}"
                     f" {m['motion_iou']:10.3f}")
    return lines


def main(out: str = "out") -> int:
    out_dir = Path(out)
    try:
        scores = animate_puppet(out_dir)
    except Exception as exc:  # noqa: BLE001 - reported in one line like every CLI error
        print(f"error: puppet animation failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out_dir / 'demo.mp4'} and {out_dir / 'demo_side_by_side.mp4'}")
    print(f"held-out puppets, {scores['frames']} frames in {scores['windows']} windows, {scores['seconds']} s; "
          f"against the ground-truth render (PSNR in dB; person: the true person's pixels; moving: those and "
          f"the reference person's):")
    print("\n".join(format_scores(scores)))
    (out_dir / "demo_scores.json").write_text(json.dumps(scores, indent=1))
    code = cli_main(["cues", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out",
                     str(out_dir / "demo_cues"), "--size", "256", "--overwrite", "--quiet"])
    if code == 0:
        print(f"real clip: cues in {out_dir / 'demo_cues'} (preview.png, *_cue.mp4)")
    return code


if __name__ == "__main__":
    sys.exit(main())
