"""Writing the Driving Cue Triplet to a folder (the `directanimator cues` output).

pose_cue.mp4, face_cue.mp4, location_cue.mp4 (body mask red, face mask green), cues.safetensors
(the arrays `load_cues` returns), preview.png. Encoding runs in a background thread fed through a
small bounded queue, so it overlaps with cue computation and memory stays flat.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import cv2
import numpy as np
import yaml
from safetensors import safe_open

from ..storage import StreamingSafetensorsWriter
from ..video import VideoWriter, save_image
from ..config import CuesConfig, to_dict
from ..storage import atomic_output_dir, atomic_write_bytes
from ..video import iter_frames, load_image, probe_video
from .extract import CueReport, extract_cues

PREVIEW_POINTS = 4


class CueFileSink:
    """The one writer of cue arrays: `cues.safetensors` (masks as uint8, read back as float in [0, 1] by
    `load_cues` and the pipeline), and, with `videos`, the mp4 previews and preview.png of the `cues`
    command. `animate` spools its cues through it with `videos=False` (it needs only the arrays) and
    reads them back window by window. Writing runs in a background thread fed through a small bounded
    queue."""

    def __init__(self, out_dir: Path, size: int, fps, num_frames_hint: int, reference: np.ndarray,
                 reference_mask: np.ndarray, audio_from: Path | None = None, metadata: dict | None = None,
                 videos: bool = True):
        self.out_dir = Path(out_dir)
        self.videos = videos
        self._writers = {name: VideoWriter(self.out_dir / f"{name}.mp4", fps, size, size, audio_from=audio_from)
                         for name in ("pose_cue", "face_cue", "location_cue")} if videos else {}
        self._tensors = StreamingSafetensorsWriter(self.out_dir / CUE_ARRAYS, self.out_dir)
        self._tensors.put("reference", reference)
        self._tensors.put("reference_mask", reference_mask.astype(np.uint8))
        self._reference = reference
        self._metadata = metadata or {}
        self._preview_at = preview_points(num_frames_hint)  # again in begin(), once the count is known
        self._preview: list[tuple[np.ndarray, ...]] = []
        self._frames: int | None = None  # exact count, from begin(): the arrays are written in place
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True, name="cue-writer")
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                pose, face, body, face_mask, pv, fv = item
                body8, face8 = mask_to_uint8(body), mask_to_uint8(face_mask)
                loc = np.stack([body8, face8, np.zeros_like(body8)], axis=2) if self.videos else None
                arrays = {"pose_cue": pose, "face_cue": face, "body_mask": body8, "face_mask": face8,
                          "pose_valid": np.array([pv], np.uint8), "face_valid": np.array([fv], np.uint8)}
                if self._frames is not None:  # the first frame: each tensor's place in the file is fixed
                    self._tensors.preallocate(self._frames, arrays)
                    self._frames = None
                if self.videos:
                    self._writers["pose_cue"].write(pose)
                    self._writers["face_cue"].write(face)
                    self._writers["location_cue"].write(loc)
                for name, array in arrays.items():
                    self._tensors.append(name, array)
            except BaseException as exc:  # re-raised in close()
                self._error = exc

    def begin(self, num_frames: int) -> None:
        """The exact number of frames that will come (the cue job knows it after its first pass): the
        arrays are then written straight into place in cues.safetensors, with no spool to copy at the
        end (BENCHMARKS.md). Without it, or with fewer frames, the file is the same."""
        self._frames = int(num_frames)
        self._preview_at = preview_points(num_frames)  # a container that did not say (WebM) gave 0 before

    def add(self, index, rgb, pose, face, body, face_mask, pose_valid, face_valid) -> None:
        if self._error is not None:
            raise self._error
        if self.videos and index in self._preview_at:
            self._preview.append((rgb, pose, face, over_reference(self._reference, body, face_mask)))
        # the masks go to uint8 on the writer thread
        self._queue.put((pose, face, body, face_mask, pose_valid, face_valid))

    def close(self, report: CueReport) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        for w in self._writers.values():
            w.close()
        meta = dict(self._metadata, fps=report.fps, size=report.size, alignment=json.dumps(report.alignment))
        self._tensors.close({k: str(v) for k, v in meta.items()})
        if self.videos:
            save_image(self.out_dir / "preview.png", preview_mosaic(self._reference, self._preview))


CUE_ARRAYS = "cues.safetensors"


def preview_points(num_frames: int) -> list[int]:
    """The frames preview.png shows: PREVIEW_POINTS spread over the clip."""
    n = max(1, int(num_frames))
    return sorted({int(round(i * (n - 1) / (PREVIEW_POINTS - 1))) for i in range(PREVIEW_POINTS)})


def over_reference(reference: np.ndarray, body: np.ndarray, face: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The Location Cue drawn over the reference photo (body red, face green), so that the preview
    shows whether the driving body lands on the reference person."""
    colour = np.stack([body, face, np.zeros_like(body)], axis=2).astype(np.float32) * 255.0
    a = alpha * np.maximum(body, face)[..., None].astype(np.float32)
    return np.clip(reference.astype(np.float32) * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def mask_to_uint8(mask: np.ndarray) -> np.ndarray:
    """A mask in [0, 1] as stored: uint8, rounded."""
    x = np.multiply(mask, np.float32(255.0), dtype=np.float32)  # one temporary, the same bytes
    x += np.float32(0.5)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def mask_from_uint8(mask: np.ndarray) -> np.ndarray:
    """A stored mask back in [0, 1], float32."""
    return np.asarray(mask).astype(np.float32) / 255.0


def preview_mosaic(reference: np.ndarray, columns: list[tuple[np.ndarray, ...]], tile: int = 192) -> np.ndarray:
    """Rows: driving frame, pose cue, face cue, location cue; the reference heads the first column."""
    def fit(img: np.ndarray) -> np.ndarray:
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        return cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)

    labels = ["reference", "driving", "pose cue", "face cue", "location cue on the reference"]
    ref_col = [fit(reference)] + [np.full((tile, tile, 3), 24, np.uint8)] * 4
    cols = [ref_col] + [[np.zeros((tile, tile, 3), np.uint8)] + [fit(x) for x in c] for c in columns]
    grid = np.vstack([np.hstack([col[r] for col in cols]) for r in range(5)])
    for r, text in enumerate(labels):
        cv2.putText(grid, text, (6, r * tile + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return grid


def load_cues(path: str | Path) -> dict[str, np.ndarray]:
    """Read cues.safetensors: pose_cue, face_cue, body_mask, face_mask (uint8), pose_valid,
    face_valid, reference, reference_mask; masks are returned as float32 in [0, 1]."""
    out: dict[str, np.ndarray] = {}
    with safe_open(str(path), framework="numpy") as f:
        for key in f.keys():
            out[key] = f.get_tensor(key)
    for key in ("body_mask", "face_mask"):
        out[key] = mask_from_uint8(out[key])
    for key in ("pose_valid", "face_valid"):
        out[key] = out[key].reshape(-1).astype(bool)
    out["reference_mask"] = out["reference_mask"].astype(bool)
    return out


CUE_FILES = ("pose_cue.mp4", "face_cue.mp4", "location_cue.mp4", "cues.safetensors", "report.json", "preview.png",
             "config.yaml")


def write_cues(reference_path: str | Path, driving_path: str | Path, out_dir: str | Path, cfg: CuesConfig,
               overwrite: bool = False, progress: bool = True, videos: bool = True) -> CueReport:
    """The `directanimator cues` job: everything lands in `out_dir` at once, or nothing does. Without
    `videos` only the arrays (cues.safetensors), report.json and config.yaml: no mp4 previews and no
    preview.png, which is all the training cache and `animate` need (and about 5 ms/frame less at 512 px,
    BENCHMARKS.md)."""
    reference = load_image(reference_path)
    info = probe_video(driving_path)
    with atomic_output_dir(out_dir, overwrite=overwrite, known=CUE_FILES) as tmp:
        def make_sink(reference_img: np.ndarray, reference_mask: np.ndarray) -> CueFileSink:
            return CueFileSink(tmp, cfg.size, info.fps_fraction, info.num_frames, reference_img, reference_mask,
                               audio_from=Path(driving_path) if info.has_audio else None, videos=videos)

        report, _ = extract_cues(reference, lambda: iter_frames(driving_path), cfg, make_sink, fps=info.fps,
                                 num_frames_hint=info.num_frames, progress=progress,
                                 variable_frame_rate=info.variable_frame_rate)
        report.config = to_dict(cfg)
        data = report.as_dict()
        data["driving"] = {"path": str(driving_path), "width": info.width, "height": info.height,
                           "variable_frame_rate": info.variable_frame_rate, "has_audio": info.has_audio,
                           "rotation": info.rotation}
        atomic_write_bytes(tmp / "report.json", json.dumps(data, indent=2).encode())
        # nested under `cues:` like every config file, so it can be passed back as --config
        atomic_write_bytes(tmp / "config.yaml", yaml.safe_dump({"cues": to_dict(cfg)}, sort_keys=False).encode())
    return report
