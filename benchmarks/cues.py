"""Benchmark of `directanimator cues` (the Driving Cue Triplet).

Measures, on a 512x512 H.264 clip made from the bundled real clip (person dancing):
- median ms/frame end to end (decode twice, segment, face, three cues, encode three videos, write
  the safetensors file) and per stage, over --runs runs; the same for `--arrays-only` (no mp4
  previews: what the training cache and `animate` need), alternating with the full job;
- three baselines of the arrays-only job, each alternating with the others in the same run and each
  undoing the ones listed before it as well:
  `whole_frame_location` (the Location Cue warped and softened on the whole frame, 32-bit component
  labels, crops always copied, the Pose Cue's window wrapped into the frame by modulo indexing),
  `whole_frame_pose` (also the Pose Cue's low-pass on the whole frame, the full-range face fallback
  asked on every frame the short range misses, the masks' uint8 conversion through three
  temporaries) and `per_tensor_spool` (also the cue arrays spooled to one file per tensor and copied
  at the end, subject selection and mask statistics on the whole frame, FFmpeg's scaler on its
  automatic threads);
- peak resident memory of the whole job for the clip and for the same clip ten times longer.
The paper's reference is 31 ms/frame (Grounded-SAM + low-pass on an H20 GPU, Table 7).

    .venv/bin/python benchmarks/cues.py [--runs 5] [--long-runs 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

from _util import peak_rss_mib_of

from directanimator.machine import machine

from directanimator.assets import ASTRONAUT, WALK_VIDEO
from directanimator.config import CuesConfig
from directanimator.cues.files import write_cues
from directanimator.video import Letterbox, VideoWriter, iter_frames


def make_clip(path: Path, repeats: int, size: int = 512) -> int:
    frames = [Letterbox.fit(f.shape[1], f.shape[0], size).apply(f) for f in iter_frames(WALK_VIDEO)]
    with VideoWriter(path, 30, size, size, preset="veryfast") as w:
        for r in range(repeats):
            for f in (frames if r % 2 == 0 else frames[::-1]):  # ping-pong: no jump at the joins
                w.write(f)
    return len(frames) * repeats


def _mask_stats_whole_frame(prob, subject, box=None):
    """mask_stats on the whole frame, whatever the subject's box (the per_tensor_spool baseline)."""
    import cv2
    import numpy as np

    from directanimator.cues.quality import MaskStats

    area = int(subject.sum())
    if area == 0:
        return MaskStats(0, 0.0, 0.0)
    count, _, stats, _ = cv2.connectedComponentsWithStats(subject.astype(np.uint8), connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else area
    ys, xs = np.nonzero(subject)
    region = prob[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    near = region[region > 0.1]
    return MaskStats(area, largest / area, float(np.abs(2.0 * near - 1.0).mean()) if near.size else 0.0)


def _pose_cue_whole_frame(rgb, mask, mode, lowpass, box=None):
    """pose_cue gray and low-pass on the whole frame, the box unused (the whole_frame_pose baseline)."""
    import numpy as np

    from directanimator.cues.pose import pose_cue

    if mode != "gray_lowpass":
        return pose_cue(rgb, mask, mode, lowpass, box)
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gray *= mask
    return np.clip(lowpass(gray) + 0.5, 0, 255).astype(np.uint8)


def _mask_to_uint8_temporaries(mask):
    import numpy as np

    return np.clip(np.asarray(mask, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _components_32bit(mask):
    """segment.components with 32-bit labels, the mask copied to uint8 (whole_frame_location)."""
    import cv2
    import numpy as np

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return count, labels, stats


def _place_modulo(window, sy, sx, shape):
    """pose._place with the window's rows and columns indexed modulo the
    frame (numpy's fancy indexing) instead of block copies."""
    import numpy as np

    (h, w), (ly, lx) = shape, window.shape
    out = np.zeros((h, w), np.float32)
    out[np.ix_(np.arange(sy, sy + ly) % h, np.arange(sx, sx + lx) % w)] = window
    return out


@contextmanager
def whole_frame_location():
    """The Location Cue warped and softened on the whole frame, 32-bit component labels, the
    tracker's and the face search's crops always copied, and the Pose Cue's window put back into the
    frame by modulo indexing where it leaves it."""
    from directanimator.cues import extract, location, pose, segment

    saved = (extract.location_masks, segment.components, segment.crop_square, pose._place)
    crop = segment.crop_square
    pose._place = _place_modulo
    extract.location_masks = lambda body, face, a, mode, cell, box=None: location.location_masks(body, face, a, mode,
                                                                                                cell)
    segment.components = _components_32bit
    segment.crop_square = lambda rgb, roi, view=False: crop(rgb, roi)
    try:
        yield
    finally:
        extract.location_masks, segment.components, segment.crop_square, pose._place = saved


# the baselines, each also undoing what the ones before it undo
BASELINES = ("whole_frame_location", "whole_frame_pose", "per_tensor_spool")


@contextmanager
def previous_way(baseline: str):
    """The cue job as one of BASELINES (module docstring)."""
    level = BASELINES.index(baseline)
    if level == 0:
        with whole_frame_location():
            yield
        return
    with whole_frame_location(), _whole_frame_pose(per_tensor_spool=level >= 2):
        yield


@contextmanager
def _whole_frame_pose(per_tensor_spool: bool):
    import numpy as np

    from directanimator import video
    from directanimator.cues import extract, face, files, segment

    def whole_frame(self, prob, roi, previous, centres):
        return segment.select_subject(prob >= self.threshold, previous, self.min_area, self.rule, centres,
                                      self.map_point)

    def upright_auto_threads(frame):
        rgb = frame.to_ndarray(format="rgb24")
        k = video._rotation(frame) // 90
        return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb

    class AskedEveryTime(face.SubjectFaceFinder):
        def __init__(self, head, wide=None, max_skip=0):
            super().__init__(head, wide, 0)

    saved = (files.CueFileSink.begin, segment.SubjectTracker._select_in_roi, extract.mask_stats, video._upright,
             extract.pose_cue, extract.SubjectFaceFinder, files.mask_to_uint8)
    extract.pose_cue, extract.SubjectFaceFinder, files.mask_to_uint8 = (_pose_cue_whole_frame, AskedEveryTime,
                                                                        _mask_to_uint8_temporaries)
    if per_tensor_spool:
        files.CueFileSink.begin = lambda self, n: None
        segment.SubjectTracker._select_in_roi = whole_frame
        extract.mask_stats = _mask_stats_whole_frame
        video._upright = upright_auto_threads
    try:
        yield
    finally:
        (files.CueFileSink.begin, segment.SubjectTracker._select_in_roi, extract.mask_stats, video._upright,
         extract.pose_cue, extract.SubjectFaceFinder, files.mask_to_uint8) = saved


def fallback_tally(clip: Path, out: Path, cfg: CuesConfig, baseline: str | None) -> dict:
    """How often one job asks the face search's full-range fallback, and how often that finds a face."""
    from directanimator.cues import face

    tally = {"asked": 0, "found": 0}
    real = face.SubjectFaceFinder.__call__

    def counting(self, *args, **kwargs):
        asked = self.wide_calls
        found = real(self, *args, **kwargs)
        if self.wide_calls > asked:
            tally["asked"] += 1
            tally["found"] += found is not None
        return found

    face.SubjectFaceFinder.__call__ = counting
    try:
        with previous_way(baseline) if baseline else nullcontext():
            write_cues(ASTRONAUT, clip, out, cfg, progress=False, videos=False)
    finally:
        face.SubjectFaceFinder.__call__ = real
    return tally


def cue_differences(now: Path, before: Path) -> dict:
    """Where two jobs' cue arrays differ: per tensor, the frames and pixels that differ, the largest
    difference (levels of 255)."""
    import numpy as np
    from safetensors.numpy import load_file

    from directanimator.cues.files import CUE_ARRAYS

    a, b = load_file(str(now / CUE_ARRAYS)), load_file(str(before / CUE_ARRAYS))
    out = {}
    for k in sorted(a):
        d = np.abs(a[k].astype(np.int64) - b[k].astype(np.int64))
        frames = int(np.any(d.reshape(len(d), -1) > 0, axis=1).sum()) if d.ndim > 1 else int((d > 0).sum())
        out[k] = {"frames": frames, "pixels": int((d > 0).sum()), "max": int(d.max()) if d.size else 0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--long-runs", type=int, default=5, help="runs of each job on the 450-frame clip")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = make_clip(tmp / "clip.mp4", 1)
        n10 = make_clip(tmp / "clip10.mp4", 10)
        cfg = CuesConfig(size=512)
        # Peak memory first, in fresh processes: measured after this process's timing runs below, the
        # children's peak came out higher and the same for both clips (not traced).
        code = (f"from directanimator.config import CuesConfig\nfrom directanimator.cues.files import write_cues\n"
                f"write_cues({str(ASTRONAUT)!r}, {{clip!r}}, {{out!r}}, CuesConfig(size=512), progress=False)")
        mem1 = peak_rss_mib_of(code.format(clip=str(tmp / "clip.mp4"), out=str(tmp / "m1")))
        mem10 = peak_rss_mib_of(code.format(clip=str(tmp / "clip10.mp4"), out=str(tmp / "m10")))
        runs, arrays = [], []
        baseline_runs: dict[str, list[dict]] = {b: [] for b in BASELINES}
        for i in range(args.runs):  # the jobs alternate, in the same run
            report = write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / f"out{i}", cfg, progress=False)
            runs.append(report.ms_per_frame)
            report = write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / f"arrays{i}", cfg, progress=False, videos=False)
            arrays.append(report.ms_per_frame)
            for baseline, into in baseline_runs.items():
                with previous_way(baseline):
                    report = write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / f"{baseline}_{i}", cfg,
                                        progress=False, videos=False)
                into.append(report.ms_per_frame)

        def median_stages(rows):
            return {k: statistics.median(r[k] for r in rows) for k in rows[0]}

        stages, stages_arrays = median_stages(runs), median_stages(arrays)
        stages_baselines = {b: median_stages(v) for b, v in baseline_runs.items()}

        def timed(out: str) -> tuple[float, float]:
            """The job's wall ms/frame and its CPU ms/frame (user + system, every thread of this process):
            the CPU figure moves less with the machine's neighbours than the wall time does."""
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            report = write_cues(ASTRONAUT, tmp / "clip10.mp4", tmp / out, cfg, progress=False, videos=False)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            return report.ms_per_frame["total"], 1000 * cpu / report.num_frames

        long_runs: dict[str, list[tuple[float, float]]] = {"now": [], **{b: [] for b in BASELINES}}
        order = (None, *BASELINES)
        for i in range(max(1, args.long_runs)):  # the 450-frame clip, the order alternating run to run
            for baseline in (order if i % 2 == 0 else order[::-1]):
                with previous_way(baseline) if baseline else nullcontext():
                    name = baseline or "now"
                    long_runs[name].append(timed(f"long_{name}_{i}"))
        long = {k: {"ms_per_frame": statistics.median(w for w, _ in v), "fastest_run": min(w for w, _ in v),
                    "cpu_ms_per_frame": round(statistics.median(c for _, c in v), 2),
                    "runs_ms_per_frame": [round(w, 2) for w, _ in v]} for k, v in long_runs.items()}
        # paired: each "now" run against each baseline's run next to it
        paired = {b: [round(y[0] / x[0], 3) for x, y in zip(long_runs["now"], long_runs[b])] for b in BASELINES}
        differences = {b: cue_differences(tmp / "long_now_0", tmp / f"long_{b}_0") for b in BASELINES[:2]}
        fallback = {"now": fallback_tally(tmp / "clip10.mp4", tmp / "tally_now", cfg, None),
                    "whole_frame_pose": fallback_tally(tmp / "clip10.mp4", tmp / "tally_before", cfg,
                                                       "whole_frame_pose")}
        # Model start-up (~0.3 s) weighs on a 45-frame clip; the long clip shows the steady state.
        long_total = write_cues(ASTRONAUT, tmp / "clip10.mp4", tmp / "long", cfg, progress=False).ms_per_frame["total"]
    result = {"machine": machine(), "frames": n, "runs": args.runs, "size": 512,
              "median_ms_per_frame": stages, "paper_ms_per_frame_H20": 31.0,
              "median_ms_per_frame_arrays_only": stages_arrays,
              "arrays_only_vs_full": round(stages["total"] / stages_arrays["total"], 3),
              "median_ms_per_frame_arrays_only_baselines": stages_baselines,
              "speedup_arrays_only_vs_baselines": {b: round(v["total"] / stages_arrays["total"], 3)
                                                   for b, v in stages_baselines.items()},
              "450_frame_clip_arrays_only": long,
              "450_frame_speedup_vs_baselines": {b: round(long[b]["ms_per_frame"] / long["now"]["ms_per_frame"], 3)
                                                 for b in BASELINES},
              "450_frame_paired_speedups_vs_baselines": paired,
              "450_frame_cues_differing_from_baselines": differences,
              "450_frame_full_range_face_fallback": fallback,
              "ratio_vs_paper": round(31.0 / stages["total"], 3),
              "ms_per_frame_450_frame_clip": long_total, "ratio_vs_paper_450": round(31.0 / long_total, 3),
              "peak_rss_mib": {f"{n} frames": round(mem1, 1), f"{n10} frames": round(mem10, 1)}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
