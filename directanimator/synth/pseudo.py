"""Pseudo driving videos for the Same2X cross-ID stage (paper A.3), made by the puppet world.

The paper animates other identities with StableAnimator/MimicMotion and filters by hand. Here the
same motion is re-rendered exactly with another identity and scene, then degraded on purpose to
imitate an imperfect animator, with each degradation's strength in [0, 1]:
blur (Gaussian, sigma up to 3 px at 128), colour drift (a gain that wanders over time, up to +-30%),
pose jitter (per-frame angle noise up to 0.3 rad) and identity leak (the source identity's own render
blended over the person, up to 60%).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .identity import Identity
from .motion import Motion, Pose
from .render import Clip, render_clip
from .scene import Scene


@dataclass(frozen=True)
class Degradation:
    blur: float = 0.0
    colour_drift: float = 0.0
    pose_jitter: float = 0.0
    identity_leak: float = 0.0

    def any(self) -> bool:
        return any(v > 0 for v in (self.blur, self.colour_drift, self.pose_jitter, self.identity_leak))


class JitteredMotion(Motion):
    """A motion with deterministic per-frame noise on its joint angles."""

    def __init__(self, base: Motion, strength: float, fps: float):
        object.__setattr__(self, "__dict__", dict(base.__dict__))
        self._base, self._strength, self._fps = base, strength, fps

    def pose(self, t: float) -> Pose:
        p = self._base.pose(t)
        r = np.random.default_rng([self._base.id, int(round(t * self._fps)), 0x717])
        n = lambda: float(r.normal(0, 0.3 * self._strength))  # noqa: E731
        return replace(p, shoulder=(p.shoulder[0] + n(), p.shoulder[1] + n()), elbow=(p.elbow[0] + n(), p.elbow[1] + n()),
                       hip=(p.hip[0] + 0.5 * n(), p.hip[1] + 0.5 * n()), lean=p.lean + 0.3 * n())


def render_pseudo(source_identity: int, motion: int, identity: int, scene: int, num_frames: int, size: int,
                  fps: float, degradation: Degradation = Degradation()) -> Clip:
    """`identity` performing `motion` in `scene`, degraded; `source_identity` is the one that leaks."""
    m = Motion.from_id(motion)
    if degradation.pose_jitter > 0:
        m = JitteredMotion(m, degradation.pose_jitter, fps)
    clip = render_clip(Identity.from_id(identity), m, Scene.from_id(scene), num_frames, size, fps)
    if not degradation.any():
        return clip
    frames = clip.frames.astype(np.float32)
    if degradation.identity_leak > 0:
        leak = render_clip(Identity.from_id(source_identity), m, Scene.from_id(scene), num_frames, size, fps)
        a = 0.6 * degradation.identity_leak * leak.masks[..., None]
        frames = frames * (1 - a) + leak.frames.astype(np.float32) * a
    if degradation.colour_drift > 0:
        r = np.random.default_rng([identity, motion, scene, 0xC0])
        walk = np.cumsum(r.normal(0, 1, (num_frames, 3)), axis=0)
        walk /= max(1.0, np.abs(walk).max())
        frames *= 1 + 0.3 * degradation.colour_drift * walk[:, None, None, :]
    if degradation.blur > 0:
        sigma = 3.0 * degradation.blur * size / 128
        frames = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])
    clip.frames = np.clip(frames + 0.5, 0, 255).astype(np.uint8)
    return clip
