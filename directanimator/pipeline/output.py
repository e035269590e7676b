"""Writing the result: the reference's own framing (letterbox padding cropped, optional enlargement),
the result video, the side-by-side, the kept frames; under temporary names until complete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..video import Letterbox, VideoWriter, iter_frames


@dataclass
class Framing:
    """The written frame: the reference's own framing in the working frame (its letterbox padding
    cropped; even sides, `ow` x `oh` at `x0`, `y0`), written at `fw` x `fh` (enlarged with Lanczos for
    `out_size`), and the side-by-side's panel side, enlarged with it."""

    x0: int
    y0: int
    ow: int
    oh: int
    fw: int
    fh: int
    panel: int

    @classmethod
    def of(cls, reference: np.ndarray, size: int, out_size: int | None) -> "Framing":
        lb = Letterbox.fit(reference.shape[1], reference.shape[0], size)
        iw, ih = lb.inner
        ow, oh = max(2, iw // 2 * 2), max(2, ih // 2 * 2)
        fw, fh, panel = ow, oh, size
        if out_size is not None:
            k = out_size / max(ow, oh)
            fw, fh = max(2, int(round(ow * k / 2)) * 2), max(2, int(round(oh * k / 2)) * 2)
            panel = max(2, int(round(size * k / 2)) * 2)
        return cls(lb.pad_x, lb.pad_y, ow, oh, fw, fh, panel)

    def shown(self, full: np.ndarray) -> np.ndarray:
        """A finished working-size frame as written."""
        shown = np.ascontiguousarray(full[self.y0:self.y0 + self.oh, self.x0:self.x0 + self.ow])
        if (self.fw, self.fh) != (self.ow, self.oh):
            shown = cv2.resize(shown, (self.fw, self.fh), interpolation=cv2.INTER_LANCZOS4)
        return shown


class Writers:
    """Step 8: each finished frame to the result video, to the side-by-side when asked (reference |
    driving | pose cue | result, letterboxed) and to the kept frames when asked; both videos under
    temporary names in `tmp`, moved into place by `move_to`."""

    def __init__(self, tmp: Path, suffix: str, driving, info, size: int, framing: Framing, ref_lb: np.ndarray,
                 side_by_side: bool, keep: bool):
        audio = Path(driving) if info.has_audio else None
        self.framing, self.size, self.ref_lb = framing, size, ref_lb
        self.result_path = tmp / ("result" + suffix)
        self.side_path = tmp / ("side" + suffix) if side_by_side else None
        self.result = VideoWriter(self.result_path, info.fps_fraction, framing.fw, framing.fh, crf=18, audio_from=audio)
        self.side = None
        if side_by_side:
            self.side = VideoWriter(self.side_path, info.fps_fraction, 4 * framing.panel, framing.panel, crf=18,
                                    audio_from=audio)
            self.driving_frames, self.driving_lb = iter_frames(driving), Letterbox.fit(info.width, info.height, size)
        self.kept: list[np.ndarray] | None = [] if keep else None
        self.poses: dict[int, np.ndarray] = {}

    def add_poses(self, start: int, pose_cue: np.ndarray, n: int) -> None:
        """A window's Pose Cue frames, for the side-by-side (the first window that has a frame gives it)."""
        for j in range(len(pose_cue)):
            if start + j < n:
                self.poses.setdefault(start + j, pose_cue[j])

    def write(self, index: int, full: np.ndarray) -> None:
        shown = self.framing.shown(full)
        self.result.write(shown)
        if self.kept is not None:
            self.kept.append(shown)
        pose = self.poses.pop(index)
        if self.side is not None:
            drv = self.driving_lb.apply(next(self.driving_frames))
            pose3 = np.repeat(pose[..., None], 3, axis=2) if pose.ndim == 2 else pose
            row = np.concatenate([self.ref_lb, drv, pose3, full], axis=1)
            if self.framing.panel != self.size:
                row = cv2.resize(row, (4 * self.framing.panel, self.framing.panel), interpolation=cv2.INTER_LANCZOS4)
            self.side.write(np.ascontiguousarray(row))

    def close(self) -> None:
        self.result.close()
        if self.side is not None:
            self.side.close()

    def move_to(self, out: Path, side_by_side: str | Path | None) -> None:
        self.result_path.replace(out)
        if self.side_path is not None:
            Path(side_by_side).parent.mkdir(parents=True, exist_ok=True)
            self.side_path.replace(side_by_side)
