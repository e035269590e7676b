"""DirectAnimator: human image animation driven directly by the raw driving video.

Reproduction of "Beyond Skeletons: Learning Animation Directly from Driving Videos with Same2X
Training Strategy" (Zeng et al.). See README.md for the map from paper sections to modules.
"""

__version__ = "0.1.0"
