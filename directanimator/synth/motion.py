"""Motion: smooth trajectories of an articulated 2D puppet, deterministic from an integer.

Five families (dance, wave, walk, turn, jump); each motion draws its frequencies, phases and
amplitudes from its id. A pose is a set of angles and offsets in units of body height; the renderer
turns it into joints (COCO-17 order), with depth order and facing direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MOTION_FAMILIES = ("dance", "wave", "walk", "turn", "jump")

COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
          "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
          "right_knee", "left_ankle", "right_ankle")


@dataclass(frozen=True)
class Pose:
    """One frame. Angles in radians; arm/leg angles measured from straight down, positive outward."""

    root_dx: float     # horizontal offset of the pelvis, in body heights
    root_dy: float     # height of the pelvis above its rest position (jumps), in body heights
    facing: float      # 0 = facing the camera, pi = back to the camera
    lean: float        # torso lean
    tilt: float        # head tilt relative to the torso
    shoulder: tuple[float, float]   # (left, right) upper-arm angle
    elbow: tuple[float, float]      # (left, right) forearm angle relative to the upper arm
    arm_depth: tuple[float, float]  # (left, right) > 0: arm in front of the torso (person's frame)
    hip: tuple[float, float]        # (left, right) thigh angle
    knee: tuple[float, float]       # (left, right) knee bend (>= 0)
    mouth_open: float  # 0-1
    smile: float       # -1 (frown) to 1
    blink: float       # 0 open, 1 closed
    brows: float       # -1 (frown) to 1 (raised)


@dataclass(frozen=True)
class Motion:
    id: int
    family: str
    freq: float          # main frequency, Hz
    phase: np.ndarray    # (8,) phases
    amp: np.ndarray      # (8,) amplitudes in 0.5-1.5
    travel: float        # walking speed, body heights per second (signed)
    turn_speed: float    # radians per second for the turn family

    @classmethod
    def from_id(cls, motion_id: int) -> "Motion":
        r = np.random.default_rng([motion_id, 0x30])
        return cls(id=motion_id, family=MOTION_FAMILIES[motion_id % len(MOTION_FAMILIES)],
                   freq=float(r.uniform(0.6, 1.4)), phase=r.uniform(0, 2 * np.pi, 8), amp=r.uniform(0.5, 1.5, 8),
                   travel=float(r.uniform(0.15, 0.35) * r.choice([-1, 1])), turn_speed=float(r.uniform(1.2, 2.2)))

    def pose(self, t: float) -> Pose:
        """The pose at time t seconds."""
        w = 2 * math.pi * self.freq
        p, a = self.phase, self.amp
        s = lambda k, mult=1.0: math.sin(mult * w * t + p[k])  # noqa: E731
        # Expressions run on their own slow clocks in every family.
        mouth = max(0.0, 0.6 * a[5] * s(5, 0.7))
        smile = 0.8 * math.sin(0.4 * w * t + p[6])
        blink = 1.0 if (t * 0.9 + p[7]) % 3.0 < 0.15 else 0.0
        brows = 0.7 * math.sin(0.5 * w * t + p[4])
        base = dict(root_dx=0.0, root_dy=0.0, facing=0.0, lean=0.0, tilt=0.1 * s(3, 0.5),
                    mouth_open=mouth, smile=smile, blink=blink, brows=brows)
        f = self.family
        if f == "dance":
            return Pose(**base | dict(root_dx=0.05 * s(0), lean=0.12 * a[1] * s(1), facing=0.5 * s(2, 0.5)),
                        shoulder=(1.2 + 0.9 * a[0] * s(0), 1.2 + 0.9 * a[1] * s(1, 1.0)),
                        elbow=(0.8 * s(2), -0.8 * s(3)), arm_depth=(s(4, 0.5), -s(4, 0.5)),
                        hip=(0.15 + 0.15 * s(0), 0.15 - 0.15 * s(0)),
                        knee=(0.3 * max(0, s(1)), 0.3 * max(0, -s(1))))
        if f == "wave":
            return Pose(**base | dict(lean=0.04 * s(1)),
                        shoulder=(2.6 + 0.2 * s(0), 0.25 + 0.1 * s(1)), elbow=(0.7 * s(0, 2.0), 0.2),
                        arm_depth=(0.5, -0.3), hip=(0.08, 0.08), knee=(0.0, 0.05 * (1 + s(2))))
        if f == "walk":
            step = s(0)
            return Pose(**base | dict(root_dx=self.travel * t, root_dy=0.01 * abs(step), facing=0.35 * np.sign(self.travel)),
                        shoulder=(0.1 + 0.5 * step, 0.1 - 0.5 * step), elbow=(0.3, 0.3),
                        arm_depth=(step, -step), hip=(0.05 + 0.45 * -step, 0.05 + 0.45 * step),
                        knee=(0.5 * max(0, step), 0.5 * max(0, -step)))
        if f == "turn":
            return Pose(**base | dict(facing=self.turn_speed * t + 0.3 * p[0]),
                        shoulder=(0.5 + 0.4 * s(1), 0.5 + 0.4 * s(2)), elbow=(0.6 * s(3), 0.6 * s(1)),
                        arm_depth=(s(5, 0.5), s(6, 0.5)), hip=(0.1, 0.1), knee=(0.05, 0.05))
        # jump
        ph = (self.freq * t + p[0] / (2 * np.pi)) % 1.0
        air = max(0.0, math.sin(2 * math.pi * ph))
        crouch = max(0.0, -math.sin(2 * math.pi * ph))
        return Pose(**base | dict(root_dy=0.18 * air - 0.08 * crouch),
                    shoulder=(0.4 + 2.2 * air, 0.4 + 2.2 * air), elbow=(0.3, 0.3), arm_depth=(0.2, 0.2),
                    hip=(0.15 + 0.2 * crouch, 0.15 + 0.2 * crouch), knee=(1.2 * crouch, 1.2 * crouch))
