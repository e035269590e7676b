"""Windows and latents: the one place where frames become the model's windows and latent frames,
shared by training (data/cache.py, train/) and inference (pipeline/).

The model sees `model.frames` = 1 + k x `temporal` frames at a time, `temporal` being the codec's
temporal factor (4 for the CogVideoX VAE and the toy codecs); the codec encodes a window's first
frame alone and the rest in groups of `temporal`, so a window has 1 + k latent frames.

- Training cuts each clip into windows that lie inside it (`windows_inside`), `data.window_stride`
  apart.
- Inference covers a whole video of any length (`windows_covering`): windows overlapping by about
  `inference.window_overlap` frames, starts on the codec's frame grid, the last one running past the
  end (its extra frames repeat the last frame and are dropped).
- Latent window fusion denoises overlapping windows as one shared latent sequence
  (`fused_window_layout`).
- Frames and cues go through the codec the same way in both (`video_tensor`, `cue_latents`).
"""

from __future__ import annotations

import numpy as np
import torch

def latent_frames(num_frames: int, temporal: int) -> int:
    """1 + k x `temporal` frames -> 1 + k latent frames; other counts are an error."""
    if num_frames < 1 or (num_frames - 1) % temporal:
        raise ValueError(f"{num_frames} frames: the codec takes 1 + {temporal}k frames")
    return 1 + (num_frames - 1) // temporal


def windows_inside(num_frames: int, window: int, stride: int | None) -> list[int]:
    """Training: starts of the windows of `window` frames that lie inside a clip of `num_frames`,
    `stride` apart (None: back to back, no overlap)."""
    return list(range(0, num_frames - window + 1, stride or window))


def window_step(window: int, overlap: int, temporal: int) -> int:
    """Inference: frames between window starts, window - overlap rounded down to a multiple of the
    codec's temporal group when the window allows it. Windows whose groups line up blend
    group-boundary to group-boundary, while misaligned windows interleave two sets of boundaries
    (measured: a frame-difference spike every 5 frames with window 9 / overlap 4, none with
    overlap 5)."""
    step = max(1, window - max(0, overlap))
    return max(temporal, step // temporal * temporal) if window > temporal else step


def windows_covering(num_frames: int, window: int, overlap: int, temporal: int) -> list[int]:
    """Inference: starts of windows covering [0, num_frames), `window_step` apart; the last window
    may run past the end. A video no longer than a window gets one window."""
    if num_frames <= window:
        return [0]
    step = window_step(window, overlap, temporal)
    count = -(-(num_frames - window) // step)
    return [i * step for i in range(count + 1)]


def fused_window_layout(starts: list[int], window: int, temporal: int) -> tuple[list[list[int]], int]:
    """Latent frames of overlapping windows in one shared sequence, for denoising them together.

    A window of `window` = 1 + temporal x (n - 1) frames has n latent frames: latent 0 holds its
    first frame alone, latent j >= 1 the frames s + 4(j-1) + 1 .. s + 4j (the CogVideoX VAE's causal
    grouping, for `temporal` = 4). With window starts on the frame grid, latent j >= 1 of the window
    starting at s = 4k is the video's latent k + j (frames 4(k+j)-3 .. 4(k+j)), the same latent every
    window covering those frames shares; latent 0 of window k > 0 (frame 4k alone) belongs to that
    window only. Returns (per window the indices of its n latents in the shared sequence, the
    sequence's length): the video's latents 0 .. M-1 first, then one private latent per window after
    the first."""
    n = latent_frames(window, temporal)
    if any(s % temporal for s in starts):
        raise ValueError(f"latent window fusion needs window starts on the {temporal}-frame grid, got {starts}")
    ks = [s // temporal for s in starts]
    shared = ks[-1] + n
    layout, private = [], shared
    for w, k in enumerate(ks):
        if w == 0 and k == 0:
            first = 0
        else:
            first, private = private, private + 1
        layout.append([first] + [k + j for j in range(1, n)])
    return layout, private


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) or (T, H, W) uint8 -> (1, T, 3, H, W) float in [-1, 1], as the codec takes it."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)
    if x.dim() == 3:
        x = x[..., None].expand(-1, -1, -1, 3)
    return x.permute(0, 3, 1, 2)[None]


def cue_latents(codec, pose: np.ndarray, face: np.ndarray, body_mask: np.ndarray | None = None,
                face_mask: np.ndarray | None = None, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
    """One window's Driving Cue Triplet on the latent grid, (1, t, C, h, w) each: the Pose and Face
    Cues through the codec (a sampling codec draws from `generator`, pose first), the Location Cue's
    masks (float in [0, 1], (T, H, W)) pooled as the codec groups frames."""
    from .model.codec import mask_to_latent

    out = {"pose_latents": codec.encode(video_tensor(pose), generator),
           "face_latents": codec.encode(video_tensor(face), generator)}
    for key, mask in (("body_mask", body_mask), ("face_mask", face_mask)):
        if mask is not None:
            out[key] = mask_to_latent(torch.from_numpy(np.ascontiguousarray(mask))[None, :, None], codec)
    return out
