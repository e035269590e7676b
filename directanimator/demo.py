"""`make demo`: the main job on the bundled example.

Until the animation model lands, the main job is `directanimator cues` on a real clip (the bundled
`walk.mp4`, a man dancing, from the sports2d package) with a real reference photo (the astronaut).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .assets import ASTRONAUT, WALK_VIDEO
from .cli import main as cli_main


def main(out: str = "out/demo_cues") -> int:
    code = cli_main(["cues", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", out,
                     "--size", "256", "--overwrite"])
    if code == 0:
        print(f"look at {Path(out) / 'preview.png'} and {Path(out)}/*_cue.mp4")
    return code


if __name__ == "__main__":
    sys.exit(main())
