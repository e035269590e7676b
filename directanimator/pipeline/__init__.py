"""Inference: a reference photo and a driving video to an animated video.

- pipeline.py     `DirectAnimatorPipeline`: loading, the memory options, and `__call__`'s steps
- checkpoints.py  which folders a model loads from (`resolve_checkpoint`), the dtype, the scheduler
- blending.py     overlapping windows' frames joined with triangular weights
- background.py   the reference photo's own background kept outside the person's region
- output.py       the written frame, the result video and the side-by-side
- offload.py      model CPU offload through accelerate's hooks

Window geometry and cues to latents come from `directanimator.windows`, shared with training.
Nothing here imports training or dataset code.
"""

from .background import background_weight
from .blending import WindowBlender, triangular_weights
from .checkpoints import EMBEDDED, make_inference_scheduler, resolve_checkpoint, resolve_dtype
from .offload import ModelOffload
from .pipeline import AnimationResult, DirectAnimatorPipeline

__all__ = [
    "EMBEDDED", "AnimationResult", "DirectAnimatorPipeline", "ModelOffload", "WindowBlender", "background_weight",
    "make_inference_scheduler", "resolve_checkpoint", "resolve_dtype", "triangular_weights",
]
