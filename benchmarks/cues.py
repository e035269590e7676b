"""Benchmark of `directanimator cues` (issue: Driving Cue Triplet).

Measures, on a 512x512 H.264 clip made from the bundled real clip (person dancing):
- median ms/frame end to end (decode twice, segment, face, three cues, encode three videos, write
  the safetensors file) and per stage, over --runs runs; the same for `--arrays-only` (no mp4
  previews: what the training cache and `animate` need), alternating with the full job;
- the arrays-only job as it was before session 8 (`previous_way`: the cue arrays spooled and copied at
  the end, subject selection and mask statistics on the whole frame, FFmpeg's scaler on automatic
  threads), alternating with the others in the same run: the baseline of the ratio;
- peak resident memory of the whole job for the clip and for the same clip ten times longer.
The paper's reference is 31 ms/frame (Grounded-SAM + low-pass on an H20 GPU, Table 7).

    .venv/bin/python benchmarks/cues.py [--runs 5] [--frames 45]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine, peak_rss_mib_of  # noqa: E402

from directanimator.assets import ASTRONAUT, WALK_VIDEO  # noqa: E402
from directanimator.config import CuesConfig  # noqa: E402
from directanimator.cues.files import write_cues  # noqa: E402
from directanimator.video import Letterbox, VideoWriter, iter_frames  # noqa: E402


def make_clip(path: Path, repeats: int, size: int = 512) -> int:
    frames = [Letterbox.fit(f.shape[1], f.shape[0], size).apply(f) for f in iter_frames(WALK_VIDEO)]
    with VideoWriter(path, 30, size, size, preset="veryfast") as w:
        for r in range(repeats):
            for f in (frames if r % 2 == 0 else frames[::-1]):  # ping-pong: no jump at the joins
                w.write(f)
    return len(frames) * repeats


def _mask_stats_whole_frame(prob, subject, box=None):
    """mask_stats as it was before session 8: on the whole frame, whatever the subject's box."""
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


@contextmanager
def previous_way():
    """The cue job as before session 8 (session 7's): the cue arrays spooled to one file per tensor and
    copied behind the header at the end (no `begin`), the subject chosen and the mask statistics taken
    on the whole frame instead of the ROI / the subject's box, and FFmpeg's scaler on its automatic
    threads (two started and joined per frame)."""
    import numpy as np

    from directanimator import video
    from directanimator.cues import extract, files, segment

    def whole_frame(self, prob, roi, previous, centres):
        return segment.select_subject(prob >= self.threshold, previous, self.min_area, self.rule, centres,
                                      self.map_point)

    def upright_auto_threads(frame):
        rgb = frame.to_ndarray(format="rgb24")
        k = video._rotation(frame) // 90
        return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb

    saved = (files.CueFileSink.begin, segment.SubjectTracker._select_in_roi, extract.mask_stats, video._upright)
    files.CueFileSink.begin = lambda self, n: None
    segment.SubjectTracker._select_in_roi = whole_frame
    extract.mask_stats = _mask_stats_whole_frame
    video._upright = upright_auto_threads
    try:
        yield
    finally:
        (files.CueFileSink.begin, segment.SubjectTracker._select_in_roi, extract.mask_stats,
         video._upright) = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
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
        runs, arrays, before = [], [], []
        for i in range(args.runs):  # the jobs alternate, in the same run
            report = write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / f"out{i}", cfg, progress=False)
            runs.append(report.ms_per_frame)
            report = write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / f"arrays{i}", cfg, progress=False, videos=False)
            arrays.append(report.ms_per_frame)
            with previous_way():
                report = write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / f"before{i}", cfg, progress=False,
                                    videos=False)
            before.append(report.ms_per_frame)
        stages = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        stages_arrays = {k: statistics.median(r[k] for r in arrays) for k in arrays[0]}
        stages_before = {k: statistics.median(r[k] for r in before) for k in before[0]}
        long_now, long_then, cpu_now, cpu_then = [], [], [], []

        def timed(out: str) -> tuple[float, float]:
            """The job's wall ms/frame and its CPU ms/frame (user + system, every thread of this process):
            the CPU figure moves less with the machine's neighbours than the wall time does."""
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            report = write_cues(ASTRONAUT, tmp / "clip10.mp4", tmp / out, cfg, progress=False, videos=False)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            return report.ms_per_frame["total"], 1000 * cpu / report.num_frames

        for i in range(max(1, min(3, args.runs))):  # the 450-frame clip: 3 alternating runs each
            wall, cpu = timed(f"long_arrays{i}")
            long_now.append(wall)
            cpu_now.append(cpu)
            with previous_way():
                wall, cpu = timed(f"long_before{i}")
            long_then.append(wall)
            cpu_then.append(cpu)
        long_arrays, long_before = statistics.median(long_now), statistics.median(long_then)
        # Model start-up (~0.3 s) weighs on a 45-frame clip; the long clip shows the steady state.
        long_total = write_cues(ASTRONAUT, tmp / "clip10.mp4", tmp / "long", cfg, progress=False).ms_per_frame["total"]
    result = {"machine": machine(), "frames": n, "runs": args.runs, "size": 512,
              "median_ms_per_frame": stages, "paper_ms_per_frame_H20": 31.0,
              "median_ms_per_frame_arrays_only": stages_arrays,
              "arrays_only_vs_full": round(stages["total"] / stages_arrays["total"], 3),
              "median_ms_per_frame_arrays_only_before_session_8": stages_before,
              "speedup_arrays_only_vs_before": round(stages_before["total"] / stages_arrays["total"], 3),
              "ms_per_frame_450_frame_clip_arrays_only": {"now": long_arrays, "before_session_8": long_before,
                                                          "speedup": round(long_before / long_arrays, 3),
                                                          "cpu_ms_per_frame_now": round(statistics.median(cpu_now), 2),
                                                          "cpu_ms_per_frame_before": round(statistics.median(cpu_then), 2)},
              "ratio_vs_paper": round(31.0 / stages["total"], 3),
              "ms_per_frame_450_frame_clip": long_total, "ratio_vs_paper_450": round(31.0 / long_total, 3),
              "peak_rss_mib": {f"{n} frames": round(mem1, 1), f"{n10} frames": round(mem10, 1)}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
