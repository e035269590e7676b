"""The puppet world: synthetic identities x motions x scenes with exact ground truth.

A 2D articulated puppet, drawn with OpenCV (anti-aliased), rich enough for the paper's design choices
to matter: patterned clothing for the low-pass filter to suppress, faces with expressions for the
face cue, turning between front and back view (Figure 1's front-back ambiguity), limbs passing in
front of and behind the torso, and people of different sizes at different places. Because we can
render identity B performing motion M, the true answer of a cross-identity animation is known.
"""

from .identity import Identity
from .motion import COCO17, Motion, MOTION_FAMILIES
from .render import Clip, render_clip
from .scene import Scene

__all__ = ["Identity", "Motion", "Scene", "Clip", "render_clip", "COCO17", "MOTION_FAMILIES"]
