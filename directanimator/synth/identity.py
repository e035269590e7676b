"""Identity: who the puppet is, deterministic from an integer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PATTERNS = ("stripes", "checks", "dots", "plain")
HAIR_STYLES = ("short", "long", "bun", "bald")
ACCESSORIES = ("none", "none", "hat", "glasses", "bag")


@dataclass(frozen=True)
class Identity:
    id: int
    height: float          # body height as a fraction of the scene's person height (0.85-1.1)
    shoulder: float        # shoulder width / height
    hip: float             # hip width / height
    head: float            # head radius / height
    limb: float            # limb thickness / height
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    top: tuple[int, int, int]
    top2: tuple[int, int, int]    # second colour of the pattern
    pattern: str
    pattern_period: float         # pattern period / height (high frequency: 0.02-0.05)
    bottom: tuple[int, int, int]
    eye: tuple[int, int, int]
    mouth: tuple[int, int, int]
    accessory: str

    @classmethod
    def from_id(cls, identity_id: int) -> "Identity":
        r = np.random.default_rng([identity_id, 0x1D])

        def colour(lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
            return tuple(int(v) for v in r.integers(lo, hi, 3))  # type: ignore[return-value]

        tone = r.uniform(0.25, 1.0)
        skin = (int(90 + 150 * tone), int(60 + 130 * tone), int(40 + 110 * tone))
        return cls(
            id=identity_id, height=float(r.uniform(0.85, 1.1)), shoulder=float(r.uniform(0.2, 0.27)),
            hip=float(r.uniform(0.13, 0.19)), head=float(r.uniform(0.065, 0.08)), limb=float(r.uniform(0.045, 0.065)),
            skin=skin, hair=colour(0, 160), hair_style=str(r.choice(HAIR_STYLES)), top=colour(), top2=colour(),
            pattern=str(r.choice(PATTERNS)), pattern_period=float(r.uniform(0.02, 0.05)), bottom=colour(0, 200),
            eye=colour(0, 90), mouth=(int(r.integers(120, 200)), int(r.integers(20, 70)), int(r.integers(30, 80))),
            accessory=str(r.choice(ACCESSORIES)))
