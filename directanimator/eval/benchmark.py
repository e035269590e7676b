"""`directanimator benchmark DATA --checkpoint C --out DIR`: a checkpoint on a dataset's test split,
with the paper's test protocols and metrics, next to the trivial answer.

- self-driving (the TikTok protocol of the paper's Table 1): each test clip is animated from its first
  frame with its own video as the driving video; the clip is the ground truth.
- cross-ID (`--cross-id`, the paper's cross-identity protocol): the driving video is a pseudo driving
  clip of the test clip's motion by another identity (DATA/pseudo/manifest.jsonl, from
  `directanimator pseudo` or an external animator); the test clip is still the ground truth.

Every row of the table is scored by `evaluate` on the same clips: the model, and the reference held
still for the whole clip (a number means nothing without it). In the self-driving protocol the
driving video pasted as it is would be the ground truth itself (a perfect score): that protocol cannot
tell copying from animating, which is why the cross-ID one exists, and there the pasted driving video
(another person doing the motion) is a row of its own. Real clips carry no ground-truth masks, so the
silhouette fill of the puppet world's tables has no row here. Metrics whose weights are not given
are marked not computed, with the reason. Generated videos are kept under DIR/<protocol>/generated/;
a clip already generated is not generated again (resumable).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..storage import atomic_write, atomic_write_bytes
from ..video import VideoWriter, iter_frames, probe_video, save_image
from .evaluate import COLUMNS, evaluate


@dataclass
class Case:
    name: str
    truth: Path  # the test clip
    driving: Path
    caption: str | None


def test_cases(dataset: Path, cross_id: bool, limit: int | None) -> list[Case]:
    from ..data.cache import read_caption
    from ..data.format import clip_dir, read_manifest, read_pseudo_manifest

    tests = [r for r in read_manifest(dataset) if r.split == "test" and r.role in ("clip", "ground_truth")]
    if not tests:
        raise InputError(f"{dataset}: no test clips in the manifest (ingest splits them off by video)")
    drivers = {r.clip_id: clip_dir(dataset, r.clip_id) / "video.mp4" for r in tests}
    if cross_id:
        drivers = {}
        for item in read_pseudo_manifest(dataset, split="test"):
            if item["source_clip"] in {r.clip_id for r in tests}:
                drivers.setdefault(item["source_clip"], clip_dir(dataset / "pseudo", item["pseudo_id"]) / "video.mp4")
        if not drivers:
            raise InputError(f"{dataset}: no pseudo driving clip of a test clip in {dataset / 'pseudo'}; run "
                             f"`directanimator pseudo --dataset {dataset} --splits train test` (or bring an external "
                             f"animator's clips)")
    cases = [Case(r.clip_id, clip_dir(dataset, r.clip_id) / "video.mp4", drivers[r.clip_id],
                  read_caption(clip_dir(dataset, r.clip_id))) for r in tests if r.clip_id in drivers]
    return cases[:limit] if limit else cases


def _still(reference: np.ndarray, frames: int, fps: float, path: Path) -> None:
    def write(tmp: Path) -> None:
        with VideoWriter(tmp, fps, reference.shape[1], reference.shape[0], crf=18) as w:
            for _ in range(frames):
                w.write(reference)

    atomic_write(path, write)


def prepare(cases: list[Case], folder: Path, pipe, steps: int | None, seed: int | None, progress: bool) -> None:
    """Per case: the reference (the clip's first frame), the ground truth, the still answer and the
    model's video, in folder/{references,ground_truth,still,generated,driving}/<name>."""
    for sub in ("references", "ground_truth", "still", "generated", "driving"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in tqdm(cases, desc="benchmark", unit="clip", disable=not progress):
        info = probe_video(case.truth)
        reference = next(iter_frames(case.truth))
        ref_path = folder / "references" / f"{case.name}.png"
        save_image(ref_path, reference)
        for sub, src in (("ground_truth", case.truth), ("driving", case.driving)):
            if not (folder / sub / f"{case.name}.mp4").is_file():
                shutil.copyfile(src, folder / sub / f"{case.name}.mp4")
        if not (folder / "still" / f"{case.name}.mp4").is_file():
            _still(reference, info.num_frames, info.fps, folder / "still" / f"{case.name}.mp4")
        out = folder / "generated" / f"{case.name}.mp4"
        if not out.is_file():
            pipe(reference, case.driving, out, steps=steps, seed=seed, prompt=case.caption, progress=False)


def run_protocol(name: str, cases: list[Case], folder: Path, pipe, features, steps, seed, progress: bool,
                 **metrics) -> dict:
    """Both rows of one protocol; `metrics`: evaluate's face, pose, arcface and dwpose options."""
    prepare(cases, folder, pipe, steps, seed, progress)
    rows = {}
    answers = [("model", "generated"), ("reference held still", "still")]
    if name == "cross-ID":  # here the pasted driving video is another person: a fair trivial answer
        answers.append(("driving video pasted", "driving"))
    for row, sub in answers:
        rows[row] = evaluate(folder / sub, folder / "ground_truth", folder / "references", folder / "driving",
                             features, progress=False, **metrics)
    return {"protocol": name, "clips": len(cases), "rows": rows}


def markdown(results: list[dict], checkpoint: str) -> str:
    lines = [f"# Benchmark of {checkpoint}", ""]
    for res in results:
        lines += [f"## {res['protocol']} ({res['clips']} test clips)", "",
                  "| answer | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for row, report in res["rows"].items():
            s = report["summary"]
            cells = ["-" if s.get(c) is None else f"{s[c] * (1e4 if c == 'L1' else 1):.4g}" for c in COLUMNS]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        unavailable = res["rows"]["model"]["unavailable"]
        lines += [""] + [f"- {k}: {v}" for k, v in unavailable.items()] + [""]
    lines.append("L1 x 1e-4. In the self-driving protocol the driving video pasted as it is would be the "
                 "ground truth itself (a perfect score).")
    return "\n".join(lines) + "\n"


def benchmark(dataset: str | Path, pipe, out: str | Path, checkpoint: str, features=None, cross_id: bool = False,
              steps: int | None = None, seed: int | None = None, limit: int | None = None, progress: bool = True,
              **metrics) -> dict:
    """Every protocol asked for on the test split of `dataset`, written to `out`; `metrics` go to
    `evaluate` (face, pose, arcface, dwpose)."""
    dataset, out = Path(dataset), Path(out)
    protocols = [("self-driving", test_cases(dataset, False, limit))]
    if cross_id:
        protocols.append(("cross-ID", test_cases(dataset, True, limit)))
    results = [run_protocol(name, cases, out / name, pipe, features, steps, seed, progress, **metrics)
               for name, cases in protocols]
    report = {"dataset": str(dataset), "checkpoint": checkpoint, "protocols": results}
    atomic_write_bytes(out / "benchmark.json", json.dumps(report, indent=1, default=float).encode())
    atomic_write_bytes(out / "benchmark.md", markdown(results, checkpoint).encode())
    return report
