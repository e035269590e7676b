"""`directanimator ingest SOURCE --out DATA`: a folder of raw videos to clips in the dataset format.

SOURCE holds videos (any container PyAV reads; a phone's display rotation is honoured) and/or
folders of numbered frames (the TikTok dataset's layout: one folder of PNG or JPEG frames per video).
Every source goes through two passes, never holding more than a frame:

1. analysis: scene cuts from PySceneDetect's `ContentDetector` (fed our own decoded frames, so
   rotation and frame folders behave as everywhere else), and on frames sampled `sample_fps` times a
   second the cue extractor's own person finder (`SubjectTracker` with the pose seeder, at the cues'
   detection size): is there a subject, and with the subject blanked out, does the pose detector still
   find a second body at least `other_person_height` of the subject's height (several people)?
2. writing: each scene is cut into clips of at most `max_seconds`; a piece shorter than
   `min_seconds` is dropped; a clip is kept when at least `min_person_fraction` of its sampled frames
   show one main person (or, with `subject` other than auto, the person the rule picks). Kept clips
   are written (downscaled so the longer side is at most `max_side`) with their manifest lines.

Sources are split into train and test by source, never by clip: a source's clips all go to one side.
Per source a record under DATA/ingest/ makes the job resumable (a source already recorded is skipped;
one interrupted is redone); DATA/ingest_report.json and .md say, per source and per clip, what was
kept and why the rest was dropped (no person, several people, too short, unreadable).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..storage import atomic_write_bytes
from ..video import Letterbox, VideoWriter, iter_frames, load_image, probe_video
from .format import ClipRecord, write_manifest

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
NOT_VIDEOS = FRAME_SUFFIXES + (".bmp", ".webp", ".gif", ".txt", ".json", ".md", ".csv")  # images, notes
REASONS = ("kept", "no person", "several people", "too short", "unreadable")


@dataclass
class IngestSettings:
    min_seconds: float = 5.0  # the paper's clips: 5-20 s
    max_seconds: float = 20.0
    test_fraction: float = 0.1  # of the sources (at least one when there are two or more)
    frames_fps: float = 30.0  # the frame rate of frame folders
    sample_fps: float = 2.0  # person checks per second of video
    min_person_fraction: float = 0.8
    other_person_height: float = 0.5  # a second body this tall (relative to the subject) = several people
    scene_threshold: float = 27.0  # ContentDetector's default
    subject: str = "auto"  # cues.segmentation.subject's rules
    max_side: int = 1024
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise InputError(f"--min-seconds must be above 0 and at most --max-seconds, got {self.min_seconds} "
                             f"and {self.max_seconds}")
        if not 0 <= self.test_fraction < 1:
            raise InputError(f"--test-fraction must lie in [0, 1), got {self.test_fraction}")
        if not 0 < self.min_person_fraction <= 1:
            raise InputError(f"--min-person-fraction must lie in (0, 1], got {self.min_person_fraction}")
        if self.max_side < 64 or self.sample_fps <= 0 or self.frames_fps <= 0:
            raise InputError("--max-side must be at least 64 and the frame rates above 0")


@dataclass
class Source:
    path: Path
    source_id: str
    kind: str  # video | frames


@dataclass
class ClipVerdict:
    clip_id: str
    start: int
    end: int  # exclusive
    seconds: float
    reason: str
    person_fraction: float | None = None
    several_fraction: float | None = None


@dataclass
class SourceReport:
    source: str
    source_id: str
    split: str
    frames: int = 0
    fps: float = 0.0
    scene_cuts: list[int] = field(default_factory=list)
    clips: list[ClipVerdict] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- sources


def _numbered(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def find_sources(root: Path) -> list[Source]:
    """Videos (every file that is not an image or a text file; one PyAV cannot read is reported as
    unreadable) and frame folders (a folder whose files are PNG/JPEG frames), sorted by path."""
    if not root.is_dir():
        raise InputError(f"source folder not found: {root}")
    found: list[Source] = []
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        rel = path.relative_to(root).with_suffix("") if path.is_file() else path.relative_to(root)
        source_id = re.sub(r"[^A-Za-z0-9_-]+", "_", str(rel)).strip("_") or "source"
        if path.is_file() and path.suffix.lower() not in NOT_VIDEOS:
            found.append(Source(path, source_id, "video"))
        elif path.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in path.iterdir() if f.is_file()):
            found.append(Source(path, source_id, "frames"))
    ids = [s.source_id for s in found]
    for s in found:
        if ids.count(s.source_id) > 1:  # "a.mp4" and "a.mov": keep both apart
            s.source_id += "_" + s.path.suffix.lstrip(".").lower()
    return found


def open_source(source: Source, frames_fps: float) -> tuple[float, int | None, Callable[[], Iterator[np.ndarray]]]:
    """(fps, frame count or None, a function giving a fresh frame iterator), RGB uint8 frames."""
    if source.kind == "frames":
        files = sorted((f for f in source.path.iterdir() if f.suffix.lower() in FRAME_SUFFIXES), key=_numbered)
        return frames_fps, len(files), lambda: (load_image(f) for f in files)
    info = probe_video(source.path)
    return info.fps, info.num_frames, lambda: iter_frames(source.path)


def split_sources(sources: list[Source], test_fraction: float, seed: int) -> dict[str, str]:
    """source_id -> train | test: the sources ordered by a hash of (seed, id), the first
    ceil(fraction x count) to test (at least one when there are two or more sources and the fraction
    is above 0). A source keeps its side however many other sources join later only if the hash
    order puts it there; the split is recorded with each source and not redrawn on a resume."""
    order = sorted(sources, key=lambda s: hashlib.sha256(f"{seed}:{s.source_id}".encode()).hexdigest())
    n_test = math.ceil(test_fraction * len(order)) if len(order) > 1 and test_fraction > 0 else 0
    return {s.source_id: ("test" if i < n_test else "train") for i, s in enumerate(order)}


# ----------------------------------------------------------------------------- analysis


class PersonCheck:
    """(one body found, a second one too) on a frame, by the cue extractor's full-body detector
    (`PoseSeeder`: MediaPipe Pose on the frame and, when it sees no one, on zoomed tiles): the first
    body's box is blanked out and the detector asked again; a second body at least
    `other_person_height` of the first's height means several people. Frames are letterboxed to
    DETECT_SIDE first (small people in wide frames need the pixels)."""

    DETECT_SIDE = 1024

    def __init__(self, other_person_height: float):
        from ..cues._native import quiet_native_stderr
        from ..cues.segment import PoseSeeder

        with quiet_native_stderr():
            self.seeder = PoseSeeder()
            self.seeder(np.zeros((64, 64, 3), np.uint8))  # load the graph now, its log lines hidden
        self.other = other_person_height

    def __call__(self, rgb: np.ndarray) -> tuple[bool, bool]:
        lb = Letterbox.fit(rgb.shape[1], rgb.shape[0], min(max(rgb.shape[:2]), self.DETECT_SIDE))
        frame = lb.apply(rgb)
        first = self.seeder(frame, tiles=True)  # [x_min, x_max, y_min, y_max]
        if first is None:
            return False, False
        x0, x1, y0, y1 = first
        grow = 0.1 * (y1 - y0)
        blanked = frame.copy()
        blanked[max(0, int(y0 - grow)):max(0, int(y1 + grow) + 1), max(0, int(x0 - grow)):max(0, int(x1 + grow) + 1)] \
            = frame.reshape(-1, 3).mean(axis=0).astype(np.uint8)
        second = self.seeder(blanked, tiles=True)
        return True, bool(second is not None and (second[3] - second[2]) >= self.other * (y1 - y0))

    def close(self) -> None:
        self.seeder.close()


def analyse(frames: Iterator[np.ndarray], fps: float, settings: IngestSettings, check: PersonCheck,
            total: int | None, progress: bool) -> tuple[int, list[int], dict[int, tuple[bool, bool]]]:
    """Pass 1: (frame count, scene cut frames, sampled frame -> (person, several))."""
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector

    from ..cues._native import quiet_native_stderr

    detector = ContentDetector(threshold=settings.scene_threshold, min_scene_len=max(1, int(round(fps / 2))))
    every = max(1, int(round(fps / settings.sample_fps)))
    cuts: list[int] = []
    people: dict[int, tuple[bool, bool]] = {}
    n = 0
    for n, rgb in enumerate(tqdm(frames, total=total, desc="analyse", unit="frame", leave=False,
                                 disable=not progress), 1):
        index = n - 1
        small = cv2.resize(rgb, (max(1, rgb.shape[1] * 256 // max(rgb.shape[:2])),
                                 max(1, rgb.shape[0] * 256 // max(rgb.shape[:2]))), interpolation=cv2.INTER_AREA)
        found = detector.process_frame(FrameTimecode(index, fps), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        cuts += [int(c.frame_num) for c in found if 0 < int(c.frame_num)]
        if index % every == 0:
            with quiet_native_stderr():  # MediaPipe's native log lines
                people[index] = check(rgb)
    return n, sorted(set(cuts)), people


def plan_clips(frames: int, cuts: list[int], fps: float, settings: IngestSettings, source_id: str,
               people: dict[int, tuple[bool, bool]]) -> list[ClipVerdict]:
    """Each scene cut into clips of at most max_seconds (the last piece kept when at least
    min_seconds), each with its verdict from the sampled person checks."""
    longest, shortest = int(settings.max_seconds * fps), int(math.ceil(settings.min_seconds * fps))
    bounds = [0, *[c for c in cuts if 0 < c < frames], frames]
    verdicts: list[ClipVerdict] = []
    for a, b in zip(bounds, bounds[1:]):
        for start in range(a, b, max(1, longest)):
            end = min(b, start + longest)
            clip_id = f"{source_id}_{len(verdicts):03d}"
            verdict = ClipVerdict(clip_id, start, end, round((end - start) / fps, 3), "too short")
            verdicts.append(verdict)
            if end - start < shortest:
                continue
            checks = [people[i] for i in range(start, end) if i in people]
            person = [p for p, _ in checks]
            several = [p and s for p, s in checks]
            verdict.person_fraction = round(float(np.mean(person)), 3) if checks else 0.0
            verdict.several_fraction = round(float(np.mean(several)), 3) if checks else 0.0
            chosen = settings.subject != "auto"  # a rule picks one person among several
            one = float(np.mean([p and (chosen or not s) for p, s in checks])) if checks else 0.0
            if one >= settings.min_person_fraction:
                verdict.reason = "kept"
            elif verdict.person_fraction >= settings.min_person_fraction:
                verdict.reason = "several people"
            else:
                verdict.reason = "no person"
    return verdicts


# ----------------------------------------------------------------------------- writing


def write_clips(frames: Iterator[np.ndarray], fps: float, verdicts: list[ClipVerdict], out: Path, split: str,
                source: Source, max_side: int) -> list[ClipRecord]:
    """Pass 2: the kept clips' frames to clips/<clip_id>/video.mp4 (temporary name, then renamed),
    meta.json; returns their manifest records."""
    from ..storage import atomic_write

    kept = [v for v in verdicts if v.reason == "kept"]
    records: list[ClipRecord] = []
    it = iter(enumerate(frames))
    for v in kept:
        folder = out / "clips" / v.clip_id
        folder.mkdir(parents=True, exist_ok=True)
        size = {}

        def video(tmp: Path, v=v, size=size) -> None:
            writer = None
            try:
                for index, rgb in it:
                    if index < v.start:
                        continue
                    if writer is None:
                        k = min(1.0, max_side / max(rgb.shape[:2]))
                        w, h = max(2, int(rgb.shape[1] * k) // 2 * 2), max(2, int(rgb.shape[0] * k) // 2 * 2)
                        size.update(w=w, h=h)
                        writer = VideoWriter(tmp, fps, w, h, crf=18)
                    writer.write(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                                 if (w, h) != rgb.shape[1::-1] else rgb)
                    if index == v.end - 1:
                        break
            finally:
                if writer is not None:
                    writer.close()

        atomic_write(folder / "video.mp4", video)
        record = ClipRecord(v.clip_id, split, float(fps), max(size["w"], size["h"]), v.end - v.start,
                            extra={"source": str(source.path), "source_id": source.source_id,
                                   "start_frame": v.start, "end_frame": v.end})
        atomic_write_bytes(folder / "meta.json", json.dumps(asdict(record), indent=1, sort_keys=True).encode())
        records.append(record)
    return records


# ----------------------------------------------------------------------------- the job


def ingest_source(source: Source, split: str, out: Path, settings: IngestSettings, check: Callable[[], PersonCheck],
                  progress: bool) -> tuple[SourceReport, list[ClipRecord]]:
    """One source, both passes; an unreadable source (or one that breaks while read) is reported,
    never fatal."""
    report = SourceReport(str(source.path), source.source_id, split)
    try:
        fps, total, frames = open_source(source, settings.frames_fps)
        report.fps = fps
        report.frames, report.scene_cuts, people = analyse(frames(), fps, settings, check(), total, progress)
        if report.frames == 0:
            raise InputError("no frames")
        report.clips = plan_clips(report.frames, report.scene_cuts, fps, settings, source.source_id, people)
        records = write_clips(frames(), fps, report.clips, out, split, source, settings.max_side)
    except (InputError, OSError, ValueError, RuntimeError) as exc:  # av's errors are OSError/ValueError
        report.error, report.clips = f"unreadable: {exc}", []
        return report, []
    return report, records


def ingest(source_root: str | Path, out: str | Path, settings: IngestSettings | None = None,
           progress: bool = True) -> dict:
    """Every source under `source_root` into the dataset at `out` (see the module docstring); returns
    the summary written to out/ingest_report.json."""
    settings = settings or IngestSettings()
    settings.check()
    from ..cues.segment import SubjectRule

    SubjectRule(settings.subject)  # a bad rule is an error before any work
    try:
        import scenedetect  # noqa: F401
    except ImportError:
        raise InputError("ingest needs PySceneDetect: pip install --no-deps scenedetect platformdirs (its "
                         "opencv-python dependency would replace MediaPipe's opencv-contrib-python)") from None
    sources = find_sources(Path(source_root))
    if not sources:
        raise InputError(f"no videos or frame folders in {source_root}")
    out = Path(out)
    done_dir = out / "ingest"
    done_dir.mkdir(parents=True, exist_ok=True)
    splits = split_sources(sources, settings.test_fraction, settings.seed)
    checker: list[PersonCheck] = []

    def check() -> PersonCheck:
        if not checker:
            checker.append(PersonCheck(settings.other_person_height))
        return checker[0]

    reports, records = [], []
    try:
        for source in tqdm(sources, desc="ingest", unit="source", disable=not progress):
            done = done_dir / f"{source.source_id}.json"
            if done.is_file():  # resumed: this source was finished before
                saved = json.loads(done.read_text())
                reports.append(saved["report"])
                records += [ClipRecord(**r) for r in saved["records"]]
                continue
            report, recs = ingest_source(source, splits[source.source_id], out, settings, check, progress)
            atomic_write_bytes(done, json.dumps({"report": report.as_dict(),
                                                 "records": [asdict(r) for r in recs]}).encode())
            reports.append(report.as_dict())
            records += recs
    finally:
        for c in checker:
            c.close()
    write_manifest(out, sorted(records, key=lambda r: r.clip_id))
    return write_report(out, reports, records, settings)


def write_report(out: Path, reports: list[dict], records: list[ClipRecord], settings: IngestSettings) -> dict:
    counts = {r: 0 for r in REASONS}
    for rep in reports:
        if rep["error"]:
            counts["unreadable"] += 1
        for c in rep["clips"]:
            counts[c["reason"]] += 1
    summary = {"sources": len(reports), "clips": len(records),
               "train": sum(r.split == "train" for r in records), "test": sum(r.split == "test" for r in records),
               "verdicts": counts, "settings": asdict(settings), "per_source": reports}
    atomic_write_bytes(out / "ingest_report.json", json.dumps(summary, indent=1).encode())
    lines = ["# Ingest report", "", f"{summary['sources']} sources, {summary['clips']} clips kept "
             f"({summary['train']} train, {summary['test']} test); verdicts: "
             + ", ".join(f"{k} {v}" for k, v in counts.items() if v), "",
             "| source | split | frames | fps | scene cuts | clip | frames | seconds | verdict | person | several |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        head = f"| {rep['source']} | {rep['split']} | {rep['frames']} | {rep['fps']:g} | {len(rep['scene_cuts'])} "
        if rep["error"]:
            lines.append(head + f"| | | | {rep['error']} | | |")
        for c in rep["clips"]:
            pf = "" if c["person_fraction"] is None else f"{c['person_fraction']:.2f}"
            sf = "" if c["several_fraction"] is None else f"{c['several_fraction']:.2f}"
            lines.append(head + f"| {c['clip_id']} | {c['start']}-{c['end']} | {c['seconds']:g} | {c['reason']} "
                                f"| {pf} | {sf} |")
    atomic_write_bytes(out / "ingest_report.md", ("\n".join(lines) + "\n").encode())
    return summary
