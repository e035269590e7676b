"""Raw driving video -> Driving Cue Triplet (paper 3.1 "Driving Cue Extraction", appendix A.2).

Two streaming passes over the driving video, so memory does not grow with its length:

1. analyse: decode, letterbox, segment, pick the main subject, score mask quality, detect the face.
   Only small per-frame records are kept; the binary subject masks are spooled to a temporary file.
2. render: decode again and write, frame by frame, the Pose Cue (dropped frames zeroed), the Face Cue
   (tracked boxes: gaps filled, smoothed) and the Location Cue (masks aligned by eqs 9-12 with one
   transform for the whole sequence, which needs every frame's box, hence the first pass).

The cues go to a `CueSink`: `MemorySink` gives a `DrivingCues` of arrays (training, tests),
`directanimator.cues.files.CueFileSink` writes the videos and the safetensors file of `cues` CLI.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from ..config import CuesConfig
from ..errors import InputError
from ..video import Letterbox
from .face import FaceDetector, MediaPipeFaceDetector, SubjectFaceFinder, face_cue, track_boxes
from .location import NO_PERSON, estimate_alignment, location_masks, tight_box
from .skeleton import KeypointSource, MediaPipeKeypoints, draw_skeleton
from .pose import GaussianLowpass, pose_cue
from .quality import MaskStats, mask_stats, quality_scores
from .segment import MediaPipeSegmenter, PoseSeeder, Segmenter, SubjectRule, SubjectTracker, select_subject

FrameSource = Callable[[], Iterable[np.ndarray]]  # returns a fresh iterator of (H, W, 3) RGB frames


@dataclass
class CueReport:
    num_frames: int
    fps: float
    size: int
    person_frames: int
    face_frames: int
    dropped_frames: list[int]
    no_person_frames: list[int]
    no_face_frames: list[int]
    alignment: dict
    reference: dict
    letterbox: dict
    quality_scores: list[float]
    ms_per_frame: dict[str, float]
    models: dict
    config: dict = field(default_factory=dict)
    # frames the container says it holds (None when it does not say); fewer read = a truncated file
    container_frames: int | None = None
    # which person was followed: the rule (cues.segmentation.subject) and the subject's box
    # [x_min, x_max, y_min, y_max] in source pixels in the first frame with a person
    subject: dict = field(default_factory=dict)
    # one line each, printed by the CLI and shown by the web page (cue_warnings)
    warnings: list[str] = field(default_factory=list)

    def truncation_warning(self) -> str | None:
        return truncation_warning(self.num_frames, self.container_frames)

    def as_dict(self) -> dict:
        return {**asdict(self), "box_formats": BOX_FORMATS}


# The report's boxes, written into it: person boxes are the paper's B of eq 9, face boxes the detectors'
BOX_FORMATS = {
    "reference.person_box": "[x_min, x_max, y_min, y_max] in working-size pixels (max exclusive)",
    "reference.face_box": "[x0, y0, x1, y1] in working-size pixels",
    "subject.first_box": "[x_min, x_max, y_min, y_max] in the driving video's own pixels",
    "alignment": "scale and translation [x, y] in working-size pixels, mapping the driving person onto the "
                 "reference person (eqs 9-12)",
}


def truncation_warning(read: int, announced: int | None) -> str | None:
    """The warning line for a driving video that yielded fewer frames than its container announces."""
    if announced is None or read >= announced:
        return None
    return (f"warning: the driving video's container announces {announced} frames but only {read} could be "
            f"read (a truncated or damaged file?); the output has {read}")


PERSON_FRAMES_WARNING = 0.9   # a person found in fewer of the frames than this is worth a warning
ALIGNMENT_SCALE_WARNING = 2.0  # the driving person scaled onto the reference by more (or less than 1/x)
OUTSIDE_WARNING = 0.25         # a Location Cue with more of its box than this outside the frame ...
OUTSIDE_FRAMES_WARNING = 0.1   # ... in at least this share of the frames


def cue_warnings(report: "CueReport", variable_frame_rate: bool = False) -> list[str]:
    """What a user should know about a cue job that still succeeded, one line each."""
    n, out = report.num_frames, []
    if report.truncation_warning():
        out.append(report.truncation_warning())
    if report.person_frames < PERSON_FRAMES_WARNING * n:
        out.append(f"warning: a person was found in only {report.person_frames} of {n} frames "
                   f"({100 * report.person_frames / n:.0f}%); the others get no pose or location cue (is the whole "
                   f"body in view, and --subject right?)")
    s = report.alignment.get("scale", 1.0)
    if not 1 / ALIGNMENT_SCALE_WARNING <= s <= ALIGNMENT_SCALE_WARNING:
        out.append(f"warning: the driving person is scaled by {s:.2f} onto the reference person (eq 9): their "
                   f"framings differ a lot (a standing driver and a seated reference?), so the body will not "
                   f"land on the reference person")
    outside = report.alignment.get("frames_mostly_outside", 0)
    if outside >= OUTSIDE_FRAMES_WARNING * n:
        out.append(f"warning: in {outside} of {n} frames the Location Cue lies mostly outside the frame (the "
                   f"driving person, moved onto the reference person's place, runs off it)")
    if variable_frame_rate:
        out.append(f"warning: the driving video has a variable frame rate; its frames are taken in order and "
                   f"written at a constant {report.fps:.3g} fps, so the output's timing differs from the source's")
    return out


def mostly_outside(boxes: list, valid: np.ndarray, alignment, size: int) -> int:
    """Frames whose person box, moved by the alignment, has more than OUTSIDE_WARNING of its area
    outside the size x size frame (boxes [x_min, x_max, y_min, y_max])."""
    count = 0
    for box, ok in zip(boxes, valid):
        if box is None or not ok:
            continue
        (x0, y0), (x1, y1) = alignment.apply([box[0], box[2]]), alignment.apply([box[1], box[3]])
        area = max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)
        inside = max(0.0, min(x1, size) - max(x0, 0)) * max(0.0, min(y1, size) - max(y0, 0))
        count += int(inside < (1 - OUTSIDE_WARNING) * area)
    return count


@dataclass
class DrivingCues:
    """The Driving Cue Triplet of one clip, as the model reads it. T frames, H = W = size.

    pose_cue (T, H, W) uint8 gray [or (T, H, W, 3) in `rgb` mode]; face_cue (T, H, W, 3) uint8;
    body_mask, face_mask (T, H, W) float32 in [0, 1] (the Location Cue, aligned to the reference);
    pose_valid, face_valid (T,) bool (False = zero cue: dropped, no person, or no face).
    """

    pose_cue: np.ndarray
    face_cue: np.ndarray
    body_mask: np.ndarray
    face_mask: np.ndarray
    pose_valid: np.ndarray
    face_valid: np.ndarray
    reference: np.ndarray  # (H, W, 3) uint8, letterboxed
    reference_mask: np.ndarray  # (H, W) bool
    report: CueReport


class CueSink(Protocol):
    def add(self, index: int, rgb: np.ndarray, pose: np.ndarray, face: np.ndarray, body: np.ndarray,
            face_mask: np.ndarray, pose_valid: bool, face_valid: bool) -> None: ...

    def close(self, report: CueReport) -> None: ...

    # optional: `begin(num_frames)` before the first `add`, with the exact number of frames to come


class MemorySink:
    """Collects the cues into a `DrivingCues` (for short clips: training data, tests)."""

    def __init__(self, reference: np.ndarray, reference_mask: np.ndarray):
        self._ref, self._ref_mask = reference, reference_mask
        self._parts: dict[str, list] = defaultdict(list)
        self.cues: DrivingCues | None = None

    def add(self, index, rgb, pose, face, body, face_mask, pose_valid, face_valid) -> None:
        for k, v in (("pose_cue", pose), ("face_cue", face), ("body_mask", body), ("face_mask", face_mask),
                     ("pose_valid", pose_valid), ("face_valid", face_valid)):
            self._parts[k].append(v)

    def close(self, report: CueReport) -> None:
        p = {k: np.stack(v) for k, v in self._parts.items()}
        self.cues = DrivingCues(p["pose_cue"], p["face_cue"], p["body_mask"], p["face_mask"],
                                p["pose_valid"].astype(bool), p["face_valid"].astype(bool),
                                self._ref, self._ref_mask, report)


class _Timer:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)

    def __call__(self, name: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.total[name] += t1 - t0
        return t1


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", disable=not enabled, leave=False,
                dynamic_ncols=True)


@dataclass
class _Analysis:
    stats: list[MaskStats]
    boxes: list[np.ndarray | None]
    faces: list[np.ndarray | None]
    shape: tuple[int, int, int]


def _letterboxed(source: FrameSource, size: int | Callable[[int, int], int]) -> Iterator[tuple[np.ndarray, Letterbox]]:
    """Frames letterboxed to `size`, or to size(width, height) of the source, decoded ahead in a
    background thread (`prefetched`): decoding overlaps with detection and the cues."""
    def frames():
        lb = None
        for frame in source():
            if lb is None or (lb.src_w, lb.src_h) != (frame.shape[1], frame.shape[0]):
                side = size(frame.shape[1], frame.shape[0]) if callable(size) else size
                lb = Letterbox.fit(frame.shape[1], frame.shape[0], side)
            yield lb.apply(frame), lb

    return prefetched(frames())


def prefetched(items: Iterator, depth: int = 4) -> Iterator:
    """`items` produced by a background thread, at most `depth` ahead (memory stays bounded): the
    consumer's work overlaps with the producer's (video decoding releases the GIL). An exception in the
    producer is raised in the consumer; a consumer that stops early (or is interrupted) stops the
    producer at its next item."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((None, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((None, done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((exc, None))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, daemon=True, name="prefetch")
    thread.start()
    try:
        while True:
            exc, item = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
            thread.join(timeout=0.05)


def detection_size(cfg: CuesConfig, *detectors) -> Callable[[int, int], int]:
    """(source width, height) -> the letterbox size segmentation and face detection run at: the
    source's longer side capped at detect_size, never below the working size; the working size when
    a detector is ground truth given at that size."""
    if any(getattr(d, "given", False) for d in detectors if d is not None):
        return lambda w, h: cfg.size
    return lambda w, h: max(cfg.size, min(max(w, h), cfg.segmentation.detect_size))


def _face_centres(face_finder: SubjectFaceFinder):
    """frame -> centres of every face the full-range detector finds (to tell touching people apart);
    None for ground-truth boxes (the puppet world has one person)."""
    detector = face_finder.wide or face_finder.head
    if getattr(detector, "given", False):
        return None

    def centres(rgb: np.ndarray) -> list[tuple[float, float]]:
        return [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b, _ in detector.detect(rgb)]

    return centres


def _subject_info(cfg: CuesConfig, boxes: list, lb: Letterbox) -> dict:
    first = next((i for i, b in enumerate(boxes) if b is not None), None)
    box = None
    if first is not None:
        b = boxes[first]
        (x0, y0), (x1, y1) = lb.to_source([b[0], b[2]]), lb.to_source([b[1], b[3]])
        box = [round(float(v), 1) for v in (x0, x1, y0, y1)]
    return {"rule": cfg.segmentation.subject, "reference_rule": cfg.segmentation.reference_subject,
            "first_frame": first, "first_box": box}


def _source_to(lb: Letterbox):
    return lambda pt: (pt[0] * lb.scale + lb.pad_x, pt[1] * lb.scale + lb.pad_y)


def _to_working(mask: np.ndarray, det: Letterbox, work: Letterbox) -> np.ndarray:
    """A float (D, D) map on the detection letterbox -> (S, S) on the working letterbox (area average)."""
    import cv2

    if det.size == work.size:
        return mask.astype(np.float32)
    (wd, hd), (ws, hs) = det.inner, work.inner
    inner = mask[det.pad_y:det.pad_y + hd, det.pad_x:det.pad_x + wd].astype(np.float32)
    out = np.zeros((work.size, work.size), np.float32)
    out[work.pad_y:work.pad_y + hs, work.pad_x:work.pad_x + ws] = cv2.resize(inner, (ws, hs),
                                                                            interpolation=cv2.INTER_AREA)
    return out


def _box_to_working(box: np.ndarray | None, det: Letterbox, work: Letterbox) -> np.ndarray | None:
    if box is None or det.size == work.size:
        return box
    xy = det.to_source(np.asarray(box, np.float64).reshape(2, 2)) * work.scale + [work.pad_x, work.pad_y]
    return xy.reshape(4).astype(np.float32)


def check_person_present(image: np.ndarray, cfg: CuesConfig, name: str = "reference image") -> None:
    """The reference must show a person (`cues.segmentation.min_person_confidence`; 0 skips the check).
    Made on the image as given: at a small working size a full-body person is too small for the
    detectors, so callers that shrink their frames check the frame at its own resolution first."""
    if cfg.segmentation.min_person_confidence <= 0:
        return
    from .presence import person_confidence

    confidence = person_confidence(image, enough=cfg.segmentation.min_person_confidence)
    if confidence < cfg.segmentation.min_person_confidence:
        raise InputError(f"no person found in the {name} (person detectors' confidence {confidence:.2f} < "
                         f"{cfg.segmentation.min_person_confidence}); use a photo where the person and the face "
                         f"are clearly visible, or set cues.segmentation.min_person_confidence: 0 in a --config "
                         f"to skip this check (a person seen from behind)")


def prepare_reference(reference: np.ndarray, cfg: CuesConfig, segmenter: Segmenter | None,
                      face_finder: SubjectFaceFinder, reference_mask: np.ndarray | None = None,
                      name: str = "reference image", seeder: PoseSeeder | None = None
                      ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Letterbox the reference, find its person (required) and face (optional). The person mask is
    `reference_mask` when given, else `segmenter`'s answer."""
    if reference_mask is None:
        check_person_present(reference, cfg, name)
    lb = Letterbox.fit(reference.shape[1], reference.shape[0], cfg.size)
    ref = lb.apply(reference)
    min_area = int(cfg.segmentation.min_component_area * cfg.size * cfg.size)
    if reference_mask is not None:
        prob = lb.apply(reference_mask.astype(np.float32) / (255.0 if reference_mask.max() > 1 else 1.0))
        subject = select_subject(prob >= cfg.segmentation.threshold, None, min_area)
        box = tight_box(subject)
        face = face_finder(ref, subject, box, None) if box is not None else None
    else:  # detected at the detection size, then brought to the working size
        assert segmenter is not None
        d = detection_size(cfg, segmenter, face_finder.head)(reference.shape[1], reference.shape[0])
        det = Letterbox.fit(reference.shape[1], reference.shape[0], d)
        ref_d = det.apply(reference) if d != cfg.size else ref
        prob_d = segmenter.segment(ref_d, -1)
        rule = SubjectRule(cfg.segmentation.reference_subject)
        finder = _face_centres(face_finder) if rule.needs_people else None
        subject_d = select_subject(prob_d >= cfg.segmentation.threshold, None,
                                   int(cfg.segmentation.min_component_area * d * d), rule,
                                   finder(ref_d) if finder is not None else None, _source_to(det))
        if not subject_d.any() and seeder is not None:  # a whole body too small for the segmenter
            tracker = SubjectTracker(segmenter, cfg.segmentation.threshold,
                                     int(cfg.segmentation.min_component_area * d * d), rule=rule, faces=finder,
                                     roi_expand=cfg.segmentation.roi_expand, seeder=seeder)
            tracker.map_point = _source_to(det)
            _, subject_d = tracker(ref_d, -1)
        box_d = tight_box(subject_d)
        face = face_finder(ref_d, subject_d, box_d, None) if box_d is not None else None
        face = _box_to_working(face, det, lb)
        subject = select_subject(_to_working(subject_d, det, lb) >= 0.5, None, min_area)
        box = tight_box(subject)
    if box is None:
        raise InputError(f"no person found in the {name}; use a photo where the person is clearly visible")
    info = {"letterbox": lb.as_dict(), "person_box": box.tolist(),
            "face_box": None if face is None else face.tolist(), "face_found": face is not None}
    return ref, subject, info


def extract_cues(reference: np.ndarray, driving: FrameSource, cfg: CuesConfig,
                 make_sink: Callable[[np.ndarray, np.ndarray], CueSink] = MemorySink, fps: float = 30.0, segmenter: Segmenter | None = None,
                 face_detector: FaceDetector | None = None, reference_mask: np.ndarray | None = None,
                 num_frames_hint: int | None = None, progress: bool = False,
                 keypoints: KeypointSource | None = None,
                 reference_name: str = "reference image",
                 variable_frame_rate: bool = False) -> tuple[CueReport, CueSink]:
    """Run both passes. `make_sink(reference, reference_mask)` receives the cues frame by frame;
    returns the report and the sink (a `MemorySink` holds the `DrivingCues` in `.cues`). In the
    `skeleton` pose mode the keypoints come from `keypoints` (MediaPipe Pose when None).
    `reference_name` names the reference in errors (e.g. a clip's frame); `variable_frame_rate` (the
    probe's) goes into the report's warnings."""
    t_start = time.perf_counter()
    # Two cores are shared by the models, the FFT and the video encoder thread: torch's own
    # thread pool only oversubscribes them (measured 1.4 -> 7.7 ms/frame for the pose cue).
    # OpenCV's pool is left as it is: on one thread (measured) the job spent a little less
    # CPU but took longer, its resizes and warps on the critical path no longer split over two cores.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    own_models = []
    if segmenter is None:
        segmenter = MediaPipeSegmenter(cfg.segmentation.model_selection)
        own_models.append(segmenter)
    if face_detector is None:
        face_finder = SubjectFaceFinder(MediaPipeFaceDetector(0, cfg.face.min_confidence),
                                        MediaPipeFaceDetector(1, cfg.face.min_confidence), cfg.face.fallback_max_skip)
        own_models.append(face_finder)
    else:
        face_finder = SubjectFaceFinder(face_detector)
    if cfg.pose.mode == "skeleton" and keypoints is None:
        keypoints = MediaPipeKeypoints()
        own_models.append(keypoints)
    seeder = PoseSeeder() if cfg.segmentation.seed_with_pose and segmenter.supports_roi else None
    if seeder is not None:
        own_models.append(seeder)
    try:
        # The reference is a photo, not a frame of the driving clip: it is segmented by its own
        # model instance (clean temporal state) unless its mask is given.
        ref_seg = MediaPipeSegmenter(cfg.segmentation.model_selection) if reference_mask is None else None
        try:
            ref_img, ref_mask, ref_info = prepare_reference(reference, cfg, ref_seg, face_finder, reference_mask,
                                                            reference_name, seeder)
        finally:
            if ref_seg is not None:
                ref_seg.close()
        sink = make_sink(ref_img, ref_mask)
        timer = _Timer()
        with tempfile.TemporaryDirectory(prefix="directanimator-cues-") as spool:
            analysis, lb = _analyse(driving, cfg, segmenter, face_finder, Path(spool) / "masks.u8",
                                    timer, num_frames_hint, progress, seeder)
            report = _render(driving, cfg, analysis, ref_mask, ref_info, lb, Path(spool) / "masks.u8",
                             sink, timer, fps, progress, t_start, [segmenter.name, face_finder.name], keypoints)
            report.container_frames = num_frames_hint or None  # 0: the container does not say
            report.warnings = cue_warnings(report, variable_frame_rate)
    finally:
        for m in own_models:
            m.close()  # type: ignore[attr-defined]
        torch.set_num_threads(torch_threads)
    return report, sink


def extract_cues_in_memory(reference: np.ndarray, frames: Iterable[np.ndarray] | FrameSource, cfg: CuesConfig,
                           **kwargs) -> DrivingCues:
    """Convenience for short clips: frames (a list/array, or a source callable) -> DrivingCues."""
    source = frames if callable(frames) else (lambda: iter(frames))
    _, sink = extract_cues(reference, source, cfg, MemorySink, **kwargs)
    assert isinstance(sink, MemorySink) and sink.cues is not None
    return sink.cues


def check_point_on_a_person(rgb: np.ndarray, box: np.ndarray, cfg: CuesConfig, index: int) -> None:
    """A subject chosen by a point (`--subject X,Y`) must be a person: the person detectors on a crop
    around what the point picked (a segmenter also returns blobs of floor or furniture, and a point on
    nobody would follow one). Skipped with cues.segmentation.min_person_confidence 0."""
    need = cfg.segmentation.min_person_confidence
    if need <= 0:
        return
    from .presence import person_confidence
    from .segment import crop_square, roi_square

    crop = crop_square(rgb, roi_square(box, 1.5, 32))
    confidence = person_confidence(crop, enough=need)
    if confidence < need:
        raise InputError(f"--subject {cfg.segmentation.subject}: what that point picks in frame {index} is not a "
                         f"person (person detectors' confidence {confidence:.2f} < {need}); choose a point on the "
                         f"person, or set cues.segmentation.min_person_confidence: 0 in a --config to skip this check")


# Pass 1 detects frame i's face on a second thread while segmenting frame i + 1 (same cues; off: one
# thread, for comparison in tests and benchmarks/cues.py)
OVERLAP_FACE_DETECTION = True


def _analyse(driving: FrameSource, cfg: CuesConfig, segmenter: Segmenter, face_finder: SubjectFaceFinder,
             spool: Path, timer: _Timer, hint: int | None, progress: bool,
             seeder: PoseSeeder | None = None) -> tuple[_Analysis, Letterbox]:
    stats: list[MaskStats] = []
    boxes: list[np.ndarray | None] = []
    faces: list[np.ndarray | None] = []
    lb = None
    seg = cfg.segmentation
    size_of = detection_size(cfg, segmenter, face_finder.head)  # detectors run there; cues at cfg.size
    tracker = SubjectTracker(segmenter, seg.threshold, 0,
                             roi=seg.roi, roi_expand=seg.roi_expand, rule=SubjectRule(seg.subject),
                             faces=_face_centres(face_finder), seeder=seeder)
    # Face detection of frame i (and its mask statistics) runs on a second thread while the main one
    # segments frame i + 1: both are independent once frame i's subject is known, and the MediaPipe
    # graphs wait without the GIL. Not when the tracker itself calls the face detector (a --subject
    # rule other than auto): one MediaPipe graph is never used by two threads.
    worker_timer = _Timer()
    overlap = OVERLAP_FACE_DETECTION and (tracker.faces is None or not tracker.rule.needs_people)

    def finish(index, rgb, det, lb, prob_d, subject_d, box_d, roi):
        t = time.perf_counter()
        face = face_finder(rgb, subject_d, box_d, roi, index) if box_d is not None else None
        face = _box_to_working(face, det, lb)
        t = worker_timer("face_detect", t)
        if det.size != cfg.size:
            prob, subject = _to_working(prob_d, det, lb), _to_working(subject_d, det, lb) >= 0.5
            box = tight_box(subject)
        else:
            prob, subject, box = prob_d, subject_d, box_d
        done = face, mask_stats(prob, subject, box), box, subject.astype(np.uint8).tobytes()
        worker_timer("segment", t)
        return done

    shape, point_checked = None, False
    pending: deque = deque()
    with open(spool, "wb") as out, _progress(hint, "cues 1/2 analyse", progress) as bar, \
            ThreadPoolExecutor(1, thread_name_prefix="cues-faces") as pool:

        def keep(result) -> None:  # one frame's finished analysis, in frame order
            face, stat, box, data = result
            faces.append(face)
            stats.append(stat)
            boxes.append(box)
            out.write(data)
            bar.update()

        def collect(block: bool) -> None:
            while pending and (block or pending[0].done() or len(pending) > 1):
                keep(pending.popleft().result())

        t = time.perf_counter()
        for index, (rgb, det) in enumerate(_letterboxed(driving, size_of)):
            d = det.size
            if lb is None or (lb.src_w, lb.src_h) != (det.src_w, det.src_h):
                lb = Letterbox.fit(det.src_w, det.src_h, cfg.size)
                tracker.map_point = _source_to(det)
                tracker.min_area = int(seg.min_component_area * d * d)
            shape = (cfg.size, cfg.size, 3)
            t = timer("decode", t)
            prob_d, subject_d = tracker(rgb, index)
            box_d = tracker.last_box
            if box_d is not None and tracker.rule.point is not None and not point_checked:
                check_point_on_a_person(rgb, box_d, cfg, index)  # the first frame the point picks someone
                point_checked = True
            t = timer("segment", t)
            args = (index, rgb, det, lb, prob_d, subject_d, box_d, tracker.last_roi)
            if overlap:
                pending.append(pool.submit(finish, *args))
                collect(False)  # at most one frame in flight besides the one just given
            else:
                keep(finish(*args))
            t = time.perf_counter()
        collect(True)
        timer("segment", t)
    for k, v in worker_timer.total.items():  # stage times of both threads (they overlap: the sum of
        timer.total[k] += v                  # the stages can exceed the total)
    if shape is None:
        raise InputError("the driving video has no frames")
    return _Analysis(stats, boxes, faces, shape), lb  # type: ignore[return-value]


def _render(driving: FrameSource, cfg: CuesConfig, an: _Analysis, ref_mask: np.ndarray, ref_info: dict,
            lb: Letterbox, spool: Path, sink: CueSink, timer: _Timer, fps: float, progress: bool,
            t_start: float, model_names: list[str], keypoints: KeypointSource | None = None) -> CueReport:
    n = len(an.stats)
    if not any(b is not None for b in an.boxes):
        rule = cfg.segmentation.subject
        raise InputError("no person found in any frame of the driving video" + (
            "" if rule == "auto" else f" for --subject {rule} (cues.segmentation.subject): is the choice right?"))
    scores = quality_scores(an.stats, cfg.quality.max_area_jump)
    person = np.array([s.area > 0 for s in an.stats])
    dropped = [int(i) for i in np.nonzero(person & (scores < cfg.quality.threshold))[0]]
    pose_valid = person.copy()
    pose_valid[dropped] = False
    # The alignment uses the frames whose masks passed the quality check (eqs 9-10).
    alignment = estimate_alignment(tight_box(ref_mask), [b if pose_valid[i] else None
                                                         for i, b in enumerate(an.boxes)])
    face_boxes = track_boxes(an.faces, cfg.face.max_gap, cfg.face.smooth_radius)
    lowpass = GaussianLowpass(cfg.pose.cutoff_cycles / cfg.size) if cfg.pose.mode == "gray_lowpass" else None
    h, w = an.shape[:2]
    skeleton_frames = 0
    colour = cfg.pose.mode in ("rgb", "skeleton")  # the pose cue has 3 channels
    # pass 1's masks, read frame by frame in order (a memmap would count every page it touched in the
    # job's resident memory: measured +110 MiB for a 450-frame clip at 512 px)
    masks = open(spool, "rb")
    begin = getattr(sink, "begin", None)
    if begin is not None:  # the sink may lay out its arrays now that the frame count is known
        begin(n)
    with masks, _progress(n, "cues 2/2 render", progress) as bar:
        t = time.perf_counter()
        for index, (rgb, _) in enumerate(_letterboxed(driving, cfg.size)):
            if index >= n:
                break
            t = timer("decode", t)
            subject = np.frombuffer(masks.read(h * w), np.uint8).reshape(h, w).astype(bool)
            pose = None
            if pose_valid[index] and cfg.pose.mode == "skeleton":
                kps = keypoints(rgb, index) if keypoints is not None else None
                if kps is not None:  # moved onto the reference person like the Location Cue
                    kps = np.concatenate([alignment.apply(kps[:, :2]), kps[:, 2:3]], axis=1)
                    pose = draw_skeleton(kps, cfg.size)
                    skeleton_frames += 1
            elif pose_valid[index]:
                pose = pose_cue(rgb, subject, cfg.pose.mode, lowpass, an.boxes[index])  # pass 1's box of it
            if pose is None:
                pose = np.zeros(rgb.shape if colour else rgb.shape[:2], np.uint8)
            t = timer("pose_cue", t)
            box = face_boxes[index]
            face = face_cue(rgb, box, cfg.face.margin, cfg.size, cfg.face.enlarge_and_center)
            t = timer("face_cue", t)
            body, face_mask = location_masks(subject if pose_valid[index] else np.zeros_like(subject),
                                             box, alignment, cfg.location.mode, cfg.location.grid_cell,
                                             an.boxes[index] if pose_valid[index] else NO_PERSON)
            t = timer("location_cue", t)
            sink.add(index, rgb, pose, face, body, face_mask, bool(pose_valid[index]), box is not None)
            t = timer("write", t)
            bar.update()
    face_frames = [i for i, b in enumerate(face_boxes) if b is not None]
    report = CueReport(
        num_frames=n, fps=float(fps), size=cfg.size, person_frames=int(person.sum()),
        face_frames=len(face_frames), dropped_frames=dropped,
        no_person_frames=[int(i) for i in np.nonzero(~person)[0]],
        no_face_frames=sorted(set(range(n)) - set(face_frames)),
        alignment={**alignment.as_dict(), "frames_mostly_outside": mostly_outside(an.boxes, pose_valid, alignment,
                                                                                   cfg.size)},
        reference=ref_info, letterbox=lb.as_dict(),
        quality_scores=[round(float(s), 4) for s in scores], ms_per_frame={},
        subject=_subject_info(cfg, an.boxes, lb),
        models={"segmenter": model_names[0], "face_detector": model_names[1],
                **({"keypoints": keypoints.name, "skeleton_frames": skeleton_frames} if cfg.pose.mode == "skeleton"
                   else {})})
    t0 = time.perf_counter()
    sink.close(report)
    timer("write", t0)
    report.ms_per_frame = {k: round(1000 * v / n, 3) for k, v in timer.total.items()}
    report.ms_per_frame["total"] = round(1000 * (time.perf_counter() - t_start) / n, 3)
    return report

