"""DirectAnimator: human image animation driven directly by the raw driving video.

Reproduction of "Beyond Skeletons: Learning Animation Directly from Driving Videos with Same2X
Training Strategy" (Zeng et al.). See docs/layout.md for the map from paper sections to modules.
"""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes (the bnb extra: 8-bit AdamW) warns on import, on CPUs with AVX512-BF16, that its 4-bit
# CPU kernel package is missing; peft imports it whenever it is installed. Nothing here uses 4-bit.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
