"""Held-out validation curves of training runs against CPU time: the cross-ID denoising loss with the
true target (fixed noise and timesteps) and the four sample metrics, with the trivial answers as
horizontal lines (the runs' validation.jsonl, train/validation.py). Used for the scaling study.

    .venv/bin/python experiments/validation_curves.py RUN [RUN ...] --labels A B ... --out docs/scaling.png
        [--markdown experiments/reports/scaling_table.md]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

METRICS = (("val_loss", "denoising loss (fixed noise, t)", None), ("val_ssim", "SSIM", "ssim"), ("val_psnr", "PSNR (dB)", "psnr"),
           ("val_person_psnr", "person PSNR (dB)", "person_psnr"), ("val_moving_psnr", "moving-region PSNR (dB)", "moving_psnr"))
TRIVIAL = {"still": "still photo", "pasted": "pasted driving", "silhouette": "silhouette fill"}


def read(run: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(x) for x in (run / "validation.jsonl").read_text().splitlines() if x.strip()]
    head = next(x for x in lines if "trivial_answers" in x)
    return head, [x for x in lines if "val_loss" in x]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--out", default="docs/scaling.png")
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    labels = args.labels or [Path(r).name for r in args.runs]
    data = [read(Path(r)) for r in args.runs]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 4))
    for ax, (key, title, tkey) in zip(axes, METRICS):
        for label, (_, rows) in zip(labels, data):
            ax.plot([r["train_seconds"] / 60 for r in rows], [r[key] for r in rows], marker=".", label=label)
        head = data[0][0]["trivial_answers"]
        for name, style in zip(TRIVIAL if tkey else (), ("--", ":", "-.")):
            if head[name][tkey] > min(r[key] for _, rows in data for r in rows) - 3:
                ax.axhline(head[name][tkey], color="gray", linestyle=style, label=TRIVIAL[name])
        ax.set_title(title)
        ax.set_xlabel("minutes of a one-thread run (wall clock)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    lines = ["| run | steps | minutes | val loss | SSIM | PSNR | person PSNR | moving PSNR |", "|---|---|---|---|---|---|---|---|"]
    for label, (_, rows) in zip(labels, data):
        best = max(rows, key=lambda r: r["val_moving_psnr"])
        last = rows[-1]
        for tag, r in (("last", last), ("best moving", best)):
            lines.append(f"| {label} ({tag}) | {r['step']} | {r['train_seconds'] / 60:.1f} | {r['val_loss']:.4f} | "
                         f"{r['val_ssim']:.3f} | {r['val_psnr']:.2f} | {r['val_person_psnr']:.2f} | {r['val_moving_psnr']:.2f} |")
    head = data[0][0]["trivial_answers"]
    for name in TRIVIAL:
        m = head[name]
        lines.append(f"| trivial: {TRIVIAL[name]} | | | | {m['ssim']:.3f} | {m['psnr']:.2f} | {m['person_psnr']:.2f} | "
                     f"{m['moving_psnr']:.2f} |")
    text = "\n".join(lines) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
