"""Scene: background and camera placement, deterministic from an integer."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUNDS = ("solid", "gradient", "texture", "clutter")


@dataclass(frozen=True)
class Scene:
    id: int
    background: str
    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    person_height: float    # puppet height (before the identity's own factor) as a fraction of the frame
    center_x: float         # where the puppet stands, fraction of the frame width
    ground_y: float         # feet line, fraction of the frame height
    motion_blur: float = 0.0  # 0 = none; blur length in fractions of the frame per unit speed
    noise: float = 0.0        # std of additive Gaussian noise, in 0-255 units

    @classmethod
    def from_id(cls, scene_id: int, motion_blur: float = 0.0, noise: float = 0.0) -> "Scene":
        r = np.random.default_rng([scene_id, 0x5C])
        return cls(id=scene_id, background=str(r.choice(BACKGROUNDS)),
                   colour_a=tuple(int(v) for v in r.integers(0, 256, 3)),  # type: ignore[arg-type]
                   colour_b=tuple(int(v) for v in r.integers(0, 256, 3)),  # type: ignore[arg-type]
                   person_height=float(r.uniform(0.45, 0.8)), center_x=float(r.uniform(0.3, 0.7)),
                   ground_y=float(r.uniform(0.85, 0.97)), motion_blur=motion_blur, noise=noise)

    def render_background(self, size: int) -> np.ndarray:
        """(size, size, 3) uint8 RGB, deterministic."""
        a, b = np.array(self.colour_a, np.float32), np.array(self.colour_b, np.float32)
        if self.background == "solid":
            return np.full((size, size, 3), self.colour_a, np.uint8)
        if self.background == "gradient":
            t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
            return np.broadcast_to(a * (1 - t) + b * t, (size, size, 3)).astype(np.uint8)
        r = np.random.default_rng([self.id, size, 0xB6])
        if self.background == "texture":
            coarse = r.random((max(2, size // 16), max(2, size // 16)), dtype=np.float32)
            t = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)[:, :, None]
            return (a * (1 - t) + b * t).astype(np.uint8)
        img = np.full((size, size, 3), self.colour_a, np.uint8)
        for _ in range(12):
            c = tuple(int(v) for v in r.integers(0, 256, 3))
            x, y = (int(v) for v in r.integers(0, size, 2))
            s = int(r.integers(size // 20, size // 5))
            if r.random() < 0.5:
                cv2.rectangle(img, (x, y), (x + s, y + s // 2), c, -1, cv2.LINE_AA)
            else:
                cv2.circle(img, (x, y), s // 2, c, -1, cv2.LINE_AA)
        return img
