"""Small media that ship with the package (see ATTRIBUTION.md)."""

from pathlib import Path

ASSETS = Path(__file__).parent
WALK_VIDEO = ASSETS / "walk.mp4"
ASTRONAUT = ASSETS / "astronaut.jpg"
