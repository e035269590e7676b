"""Calibrate the pseudo-data filter (train/pseudo.py) on the puppet world, where every pseudo clip's
degradation strengths are known, and report its precision and recall.

    .venv/bin/python experiments/pseudo_filter.py --world out/model11/world --clips 400 [--write-config]

Ground truth: a pseudo clip is *bad* when it changes what the cue says, the motion (pose jitter
strength > 0.2) or the person (identity leak strength > 0.2); blur and colour drift alone are
tolerated (the Pose Cue is gray and low-passed). Each filter criterion's threshold is chosen by
coordinate ascent on Youden's J (recall of bad clips minus the fraction of good clips dropped; F1 rewards
dropping everything when most clips are bad) (from all criteria off, three rounds over the criteria), on the first
half of the clips; precision and recall are reported on the other half, next to the old thresholds.
Writes experiments/reports/pseudo_filter.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CRITERIA = {  # score -> (threshold field, direction: drop when score < t ("min") or > t ("max"))
    "mask_iou": ("min_mask_iou", "min"),
    "pose_consistency": ("min_pose_consistency", "min"),
    "face_presence": ("min_face_presence", "min"),
    "flicker": ("max_flicker", "max"),
    "pose_jitter": ("max_pose_jitter", "max"),
    "identity_leak": ("max_identity_leak", "max"),
}
BAD_JITTER, BAD_LEAK = 0.2, 0.2


def is_bad(deg: dict) -> bool:
    return deg["pose_jitter"] > BAD_JITTER or deg["identity_leak"] > BAD_LEAK


def dropped(scores: dict, thresholds: dict) -> bool:
    for name, (field, direction) in CRITERIA.items():
        v = scores.get(name)
        if v is None or field not in thresholds:
            continue
        if (direction == "min" and v < thresholds[field]) or (direction == "max" and v > thresholds[field]):
            return True
    return False


def precision_recall(rows: list[dict], thresholds: dict) -> dict:
    drop = np.array([dropped(r["scores"], thresholds) for r in rows])
    bad = np.array([r["bad"] for r in rows])
    tp = int((drop & bad).sum())
    precision = tp / max(1, int(drop.sum()))
    recall = tp / max(1, int(bad.sum()))
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    false_drop = int((drop & ~bad).sum()) / max(1, int((~bad).sum()))
    kept = ~drop
    mean = lambda key, sel: float(np.mean([r["degradation"][key] for r, s in zip(rows, sel) if s])) if sel.any() else float("nan")  # noqa: E731
    return {"precision": precision, "recall": recall, "f1": f1, "youden": recall - false_drop,
            "good_dropped": false_drop, "dropped": int(drop.sum()), "clips": len(rows),
            "bad_in_kept": float(bad[kept].mean()) if kept.any() else float("nan"),
            "jitter_kept": mean("pose_jitter", kept), "jitter_dropped": mean("pose_jitter", drop),
            "leak_kept": mean("identity_leak", kept), "leak_dropped": mean("identity_leak", drop)}


def calibrate(rows: list[dict], start: dict) -> dict:
    thresholds = dict(start)
    for _ in range(3):
        for name, (field, direction) in CRITERIA.items():
            values = sorted({r["scores"][name] for r in rows if r["scores"].get(name) is not None})
            if not values:
                continue
            off = 0.0 if direction == "min" else 1e9
            candidates = [off, *values]
            best = max(candidates, key=lambda t: (precision_recall(rows, {**thresholds, field: t})["youden"], -abs(t - off)))
            thresholds[field] = float(best)
    return thresholds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default="out/model11/world")
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--write-config", action="store_true", help="print the calibrated thresholds as YAML")
    args = ap.parse_args()
    from directanimator.config import Config
    from directanimator.data.cache import load_clip_frames
    from directanimator.data.format import ClipRecord, clip_dir, read_manifest, write_clip
    from directanimator.train.pseudo import PuppetPseudo, score_pseudo

    world = (ROOT / args.world).resolve()
    cfg = Config()
    gen = PuppetPseudo(world, cfg)
    records = [r for r in read_manifest(world) if r.split == "train" and r.role == "clip"][: args.clips]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rec in records:
            frames, ann, info = gen.generate(rec, 0)
            prec = ClipRecord(f"{rec.clip_id}_p0", "train", rec.fps, rec.size, len(frames), role="pseudo")
            write_clip(Path(tmp), prec, frames, ann)
            source = load_clip_frames(clip_dir(world, rec.clip_id), rec.size)
            pseudo = load_clip_frames(clip_dir(tmp, prec.clip_id), rec.size)
            res = score_pseudo(source, pseudo, cfg.pseudo.filter, ann["reference_image"], ann["reference_mask"])
            rows.append({"clip": rec.clip_id, "scores": res.scores, "degradation": info["degradation"],
                         "bad": is_bad(info["degradation"])})
    half = len(rows) // 2
    fit, held = rows[:half], rows[half:]
    shipped = asdict(cfg.pseudo.filter)
    old = {**shipped, "max_flicker": 2.5, "max_pose_jitter": 1e9, "max_identity_leak": 1.0}  # before calibration
    new = calibrate(fit, {field: (0.0 if d == "min" else 1e9) for field, d in CRITERIA.values()})
    res_old, res_new, res_shipped = precision_recall(held, old), precision_recall(held, new), precision_recall(held, shipped)
    lines = ["# The pseudo-data filter, calibrated against known degradation strengths", "",
             f"`python experiments/pseudo_filter.py --world {args.world} --clips {args.clips}`: one puppet pseudo clip "
             f"per training clip (default degradation ranges), scored as `directanimator pseudo` scores them. A clip "
             f"is *bad* when pose jitter > {BAD_JITTER} or identity leak > {BAD_LEAK} "
             f"({100 * np.mean([r['bad'] for r in rows]):.0f}% of them). Thresholds fitted on the first "
             f"{len(fit)} clips (coordinate ascent on Youden's J), measured on the other {len(held)}.", "",
             "| filter | precision (dropped that are bad) | recall (bad that are dropped) | good dropped | dropped | "
             "bad among kept | jitter kept / dropped | leak kept / dropped |", "|---|---|---|---|---|---|---|---|"]
    for name, r in (("old thresholds", res_old), ("calibrated (all criteria free)", res_new),
                    ("shipped defaults (config.py)", res_shipped)):
        lines.append(f"| {name} | {r['precision']:.2f} | {r['recall']:.2f} | {r['good_dropped']:.2f} | {r['dropped']}/{r['clips']} | "
                     f"{r['bad_in_kept']:.2f} | {r['jitter_kept']:.3f} / {r['jitter_dropped']:.3f} | "
                     f"{r['leak_kept']:.3f} / {r['leak_dropped']:.3f} |")
    lines += ["", "Thresholds:", "", "| criterion | old | calibrated | shipped |", "|---|---|---|---|"]
    for name, (field, _) in CRITERIA.items():
        show = lambda v: "off" if v in (0.0, 1e9) or (field == "max_identity_leak" and v >= 1.0) else f"{v:.4g}"  # noqa: E731
        lines.append(f"| {field} | {show(old.get(field, 1e9))} | {show(new[field])} | {show(shipped[field])} |")
    lines += ["", "Each criterion alone on the held-out half (calibrated threshold, others off):", "",
              "| criterion | precision | recall |", "|---|---|---|"]
    for name, (field, direction) in CRITERIA.items():
        alone = {field: new[field]}
        r = precision_recall(held, alone)
        lines.append(f"| {name} | {r['precision']:.2f} | {r['recall']:.2f} |")
    corr = []
    for name in CRITERIA:
        for key in ("pose_jitter", "identity_leak", "blur", "colour_drift"):
            pairs = [(r["scores"][name], r["degradation"][key]) for r in rows if r["scores"].get(name) is not None]
            if len(pairs) > 2:
                a, b = np.array(pairs).T
                corr.append((name, key, float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 else float("nan")))
    lines += ["", "Correlation of each score with each degradation strength (all clips):", "",
              "| score | " + " | ".join(("pose_jitter", "identity_leak", "blur", "colour_drift")) + " |", "|---|---|---|---|---|"]
    for name in CRITERIA:
        vals = [c for c in corr if c[0] == name]
        if vals:
            lines.append(f"| {name} | " + " | ".join(f"{v[2]:+.2f}" for v in vals) + " |")
    out = ROOT / "experiments" / "reports" / "pseudo_filter.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({k: new[k] for k in (f for f, _ in CRITERIA.values())}))


if __name__ == "__main__":
    main()
