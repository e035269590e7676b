"""Where the cue job's CPU goes, thread by thread, and what that leaves of a 10 ms/frame target.

  .venv/bin/python benchmarks/cue_threads.py [--runs 3] [--repeats 10]

On benchmarks/cues.py's clip (the bundled real clip at 512 x 512, ping-ponged --repeats times: 450
frames by default), the arrays-only job (what the training cache and `animate` need) runs --runs
times after one warm-up run. During each run a sampler reads every thread's CPU time (user + system,
/proc/self/task/*/stat; the kernel's part shown apart) every 20 ms; each thread's last reading
counts, so a thread loses at most its last 20 ms. The threads are put in groups:

- the main thread (pass 1's tracking and subject choice, pass 2's three cues);
- MediaPipe's graph threads (the segmentation and face detection models; their own threads);
- video decoding (FFmpeg's frame threads) and the two passes' prefetch threads (decoding, letterbox);
- the face-detection worker of pass 1 (`cues-faces`: its Python side and the mask statistics);
- the cue writer (`cue-writer`: the masks to uint8, and the kernel's work writing cues.safetensors,
  about 1.6 MB a frame, into the page cache);
- every other thread (OpenCV's pool, torch's, ...).

Two cores give at most 20 ms of CPU in 10 ms of wall time. So a job that needs C ms of CPU per frame
cannot take less than C / 2 ms per frame, however its work is spread over the threads. The script
reports C (median over the runs), C / 2, the wall time, and how much of the 20 ms the models'
own threads and the decoding take before any of the project's Python code runs. `--model-selection 1`
asks the same of MediaPipe's cheaper landscape segmentation model (not the default: see
cues.segmentation.model_selection).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from directanimator.machine import machine
from cues import make_clip

from directanimator.assets import ASTRONAUT
from directanimator.config import CuesConfig
from directanimator.cues.files import write_cues

TICK = os.sysconf("SC_CLK_TCK")
TARGET_MS = 10.0
CORES = 2


def thread_cpu() -> dict[int, tuple[str, float, float]]:
    """Native thread id -> (kernel name, CPU seconds, of which in the kernel) for every thread of this
    process."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        reading = one_thread_cpu(int(tid))
        if reading is not None:
            out[int(tid)] = reading
    return out


def one_thread_cpu(tid: int) -> tuple[str, float, float] | None:
    """(kernel name, CPU seconds, of which in the kernel) of one thread of this process; None once it
    has ended."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            stat = f.read()
        with open(f"/proc/self/task/{tid}/comm") as f:
            comm = f.read().strip()
    except OSError:  # the thread ended meanwhile
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICK, int(fields[12]) / TICK


def group(comm: str, name: str | None) -> str:
    """The group of one thread, from its kernel name and (for Python threads) its Python name."""
    if name == "MainThread":
        return "main thread"
    if comm.startswith("mediapipe"):
        return "MediaPipe graphs"
    if comm.startswith("av:") or name == "prefetch":
        return "decoding (FFmpeg, prefetch)"
    if name is not None and name.startswith("cues-faces"):
        return "face-detection worker"
    if name == "cue-writer":
        return "cue writer"
    return "other threads"


def measured_job(clip: Path, out: Path, cfg: CuesConfig) -> dict:
    """One arrays-only job, its CPU time per frame by group, and in all (getrusage)."""
    names: dict[int, str] = {}
    readings: dict[int, tuple[str, float, float]] = {}
    done = threading.Event()

    def sample() -> None:
        for t in threading.enumerate():
            if t.native_id is not None:
                names.setdefault(t.native_id, t.name)
        readings.update(thread_cpu())

    def sampler() -> None:
        while not done.wait(0.02):
            sample()

    def started(*_) -> None:  # every Python thread started during the job, however short its life
        t = threading.current_thread()
        names.setdefault(t.native_id, t.name)
        reading = one_thread_cpu(t.native_id)
        if reading is not None:
            readings.setdefault(t.native_id, reading)
        sys.setprofile(None)

    before = thread_cpu()
    watcher = threading.Thread(target=sampler, name="sampler", daemon=True)
    watcher.start()
    threading.setprofile(started)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        report = write_cues(ASTRONAUT, clip, out, cfg, progress=False, videos=False)
    finally:
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        threading.setprofile(None)
        done.set()
        watcher.join()
    sample()
    n = report.num_frames
    groups: dict[str, float] = {}
    system: dict[str, float] = {}
    threads: dict[str, int] = {}
    sampling = 0.0
    for tid, (comm, cpu, kernel) in readings.items():
        if tid == watcher.native_id:  # the sampler's own reading of /proc: its own figure
            sampling = 1000 * cpu / n
            continue
        _, cpu0, kernel0 = before.get(tid, (comm, 0.0, 0.0))  # threads alive before the job: only its part
        key = group(comm, names.get(tid))
        groups[key] = groups.get(key, 0.0) + 1000 * (cpu - cpu0) / n
        system[key] = system.get(key, 0.0) + 1000 * (kernel - kernel0) / n
        threads[key] = threads.get(key, 0) + 1
    total = 1000 * ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / n
    return {"wall_ms_per_frame": report.ms_per_frame["total"], "cpu_ms_per_frame": total, "groups": groups,
            "system": system, "threads": threads, "sampling_ms_per_frame": sampling, "frames": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10, help="times the 45-frame clip is played (ping-pong)")
    ap.add_argument("--model-selection", type=int, choices=(0, 1), default=CuesConfig().segmentation.model_selection,
                    help="MediaPipe's segmentation model: 0 general (the default), 1 landscape (cheaper)")
    args = ap.parse_args()
    if args.runs < 1 or args.repeats < 1:
        raise SystemExit("error: --runs and --repeats must be at least 1")
    cfg = CuesConfig(size=512)
    cfg.segmentation.model_selection = args.model_selection
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_clip(tmp / "clip.mp4", args.repeats)
        write_cues(ASTRONAUT, tmp / "clip.mp4", tmp / "warm", cfg, progress=False, videos=False)
        shutil.rmtree(tmp / "warm")
        runs = []
        for i in range(args.runs):
            runs.append(measured_job(tmp / "clip.mp4", tmp / f"run{i}", cfg))
            # each run on a page cache as the first one found it: the outputs (about 1.6 MB a frame)
            # piling up in it gave the cue writer several times the kernel time
            shutil.rmtree(tmp / f"run{i}")
    keys = sorted({k for r in runs for k in r["groups"]}, key=lambda k: -statistics.median(
        r["groups"].get(k, 0.0) for r in runs))
    groups = {k: round(statistics.median(r["groups"].get(k, 0.0) for r in runs), 2) for k in keys}
    system = {k: round(statistics.median(r["system"].get(k, 0.0) for r in runs), 2) for k in keys}
    cpu = statistics.median(r["cpu_ms_per_frame"] for r in runs)
    wall = statistics.median(r["wall_ms_per_frame"] for r in runs)
    budget = CORES * TARGET_MS
    models_and_decoding = groups.get("MediaPipe graphs", 0.0) + groups.get("decoding (FFmpeg, prefetch)", 0.0)
    result = {
        "machine": machine(), "frames": runs[0]["frames"], "runs": args.runs, "size": 512,
        "segmentation_model": args.model_selection,
        "wall_ms_per_frame": round(wall, 2), "runs_wall_ms_per_frame": [round(r["wall_ms_per_frame"], 2) for r in runs],
        "cpu_ms_per_frame": round(cpu, 2), "runs_cpu_ms_per_frame": [round(r["cpu_ms_per_frame"], 2) for r in runs],
        "cpu_ms_per_frame_by_group": groups,
        "of_which_in_the_kernel": system,
        "accounted_by_threads": round(sum(groups.values()), 2),
        "least_wall_ms_per_frame_on_2_cores": round(cpu / CORES, 2),
        "target_ms_per_frame": TARGET_MS,
        "cpu_budget_of_target_ms_per_frame": budget,
        "models_and_decoding_ms_per_frame": round(models_and_decoding, 2),
        "left_of_budget_for_the_rest": round(budget - models_and_decoding, 2),
        "the_rest_now": round(cpu - models_and_decoding, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
