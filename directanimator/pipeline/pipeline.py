"""DirectAnimatorPipeline: a reference photo and a driving video to an animated video (Figure 2a).

In the diffusers style: components (transformer, scheduler, codec, text encoder), `from_pretrained`
/ `save_pretrained`, and `__call__` in numbered steps:

  1. check_inputs        files exist, sizes valid, the model matches its config
  2. driving cues        streamed through cues/extract.py into a spool file (memory bounded by a frame)
  3. windows             model.frames frames each, overlapping by inference.window_overlap
  4. encode              reference image and the window's cues through the codec
  5. denoise            (model/sampling.py) CogVideoX DDIM or DPM scheduler; optional classifier-free
                         guidance on the driving cues (pose, face and location dropped together).
                         inference.window_fusion = pixel (default): each window alone; latent: all
                         windows denoised together, their shared latent frames fused at every step
                         (MimicMotion, StableAnimator)
  6. decode and blend    overlapping frames blended with triangular weights, finished frames written
                         at once
  7. keep background     (inference.keep_background) outside the region the person occupies, the
                         reference photo's own pixels (see `background_weight`)
  8. write               the driving video's frame count and fps, its audio stream copied

Memory is bounded by one window: cues are spooled to disk, windows are read back one at a time
(with latent fusion the windows' encoded cues and the shared latent sequence are files too), and
frames leave as soon as no later window overlaps them.

Why not a subclass of diffusers' `DiffusionPipeline`: its components must be diffusers or
transformers models (ours include the weights-free DCT codec of the toy models and a prompt cache),
and its `__call__` contract returns all frames at once, while this pipeline streams an unbounded video
through windows and files. What a subclass would bring is used directly instead: diffusers' schedulers,
its group offloading and layerwise casting, accelerate's hooks for model CPU offload (`ModelOffload`),
peft LoRA through diffusers' `add_adapter`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from ..config import Config, InferenceConfig, check_seed, check_size, dump_config, guidance_warning
from ..cues.extract import extract_cues
from ..cues.files import CUE_ARRAYS, CueFileSink, mask_from_uint8
from ..errors import InputError
from ..model import CueFusionTransformer3D, build_codec, build_text_encoder, is_wan, spatial_patch
from ..model.sampling import CUE_KEYS, compute_dtype, from_diffusion_target, sample_fused_latents, sample_latents
from ..storage import work_dir
from ..video import iter_frames, load_image, probe_video
from ..windows import cue_latents, fused_window_layout, video_tensor, window_step, windows_covering
from .background import BackgroundKeeper
from .blending import WindowBlender
from .checkpoints import make_inference_scheduler, resolve_checkpoint, resolve_dtype
from .offload import ModelOffload
from .output import Framing, Writers


@dataclass
class AnimationResult:
    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    windows: int
    seconds: dict[str, float] = field(default_factory=dict)
    cue_report: dict = field(default_factory=dict)
    frames: np.ndarray | None = None  # (N, H, W, 3) uint8 as written, when asked for (`return_frames`)
    # one line each: the settings' (guidance without cue dropout) and the cue job's (cue_report's)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "num_frames": self.num_frames, "fps": self.fps, "width": self.width,
                "height": self.height, "windows": self.windows, "seconds": self.seconds, "warnings": self.warnings}


@dataclass
class _Job:
    """One call's checked inputs and settings (`__call__`'s arguments, resolved)."""

    reference: np.ndarray
    driving: str | Path
    out: Path
    size: int
    out_size: int | None
    inf: InferenceConfig  # the config's, with the call's overrides
    steps: int
    seed: int
    guidance: float
    prompt: str | None
    side_by_side: str | Path | None
    return_frames: bool
    progress: bool
    callback: Callable[[str, int, int], None] | None
    # what a Wan2.1-I2V model takes of the reference besides its latent (model/wan_sampling.py), once per call
    reference_inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class DirectAnimatorPipeline:
    def __init__(self, transformer: CueFusionTransformer3D, scheduler, codec, text_encoder, config: Config,
                 device: str | torch.device = "cpu"):
        self.transformer = transformer.eval().to(device)
        self.scheduler = scheduler
        self.codec = codec
        self.text_encoder = text_encoder
        self.config = config
        self.device = torch.device(device)
        self.dtype = compute_dtype(transformer)  # the compute dtype, whatever the storage
    @property
    def components(self) -> dict:
        return {"transformer": self.transformer, "scheduler": self.scheduler, "codec": self.codec,
                "text_encoder": self.text_encoder}

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        scheduler: str | None = None, dtype: torch.dtype | str | None = None,
                        merge_lora: bool = True, memory: str | None = None) -> "DirectAnimatorPipeline":
        """`path` None = the embedded demo model. See `resolve_checkpoint` for the folders taken.
        `dtype` is the transformer's and the VAE's (None: bfloat16 on CUDA, float32 elsewhere); the
        sampler's own arithmetic stays float32. A LoRA run's adapter is merged into the weights
        unless `merge_lora` is False (then it runs as live LoRA layers). `memory`: see
        `apply_memory_option` (default: the config's `inference.memory`)."""
        from ..model.loading import check_compatible, load_transformer

        device = torch.device(device)
        dtype = resolve_dtype(dtype, device)
        model_dir, cfg = resolve_checkpoint(path)
        # always cast to the compute dtype: a model stored in float16 (the shipped demo model, to stay small)
        # runs in float32 on a CPU
        transformer = load_transformer(model_dir, dtype=dtype, merge_lora=merge_lora)
        codec = build_codec(cfg.model, device=device, dtype=dtype)
        check_compatible(transformer, cfg, codec.latent_channels, f"checkpoint {model_dir}")
        kind = scheduler or cfg.inference.scheduler
        pipe = cls(transformer, make_inference_scheduler(kind, cfg.model.pretrained, cfg.model.backbone), codec,
                   build_text_encoder(cfg.model, transformer, device=device), cfg, device)
        pipe.apply_memory_option(memory)
        return pipe

    def apply_memory_option(self, option: str | None = None, verbose: bool = True) -> str:
        """Apply `inference.memory` (or `option`) to the transformer; returns the option applied.
        `auto` chooses from the GPU's free memory against the transformer's weight bytes plus a
        margin for activations and the VAE (one window); on the CPU it is `none`."""
        option = option or self.config.inference.memory
        if option not in ("auto", "none", "fp8", "group_offload", "model_offload"):
            raise InputError(f"memory option must be auto, none, fp8, group_offload or model_offload, got {option!r}")
        params = sum(p.numel() for p in self.transformer.parameters())
        if option == "auto":
            option = "none"
            if self.device.type == "cuda":
                free = torch.cuda.mem_get_info(self.device)[0]
                width = self.transformer.config.num_attention_heads * self.transformer.config.attention_head_dim
                margin = 2 * 1024 ** 3 + 64 * width * 1024  # VAE decode tiles and one window's activations
                bytes_per = torch.finfo(self.dtype).bits // 8
                option = next((o for o, need in (("none", params * bytes_per + margin), ("fp8", params + margin))
                               if need <= free), "group_offload")
                if verbose:
                    print(f"memory: {option} (the GPU has {free / 1024 ** 3:.1f} GiB free; the transformer's weights "
                          f"are {params * bytes_per / 1024 ** 3:.1f} GiB in {str(self.dtype).replace('torch.', '')})")
        if option == "fp8":
            self.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=self.dtype)
            self.transformer.compute_dtype = self.dtype  # the samplers feed it inputs in this dtype
        elif option == "model_offload":
            self.model_offload = ModelOffload(
                [self.transformer] + ([self.codec.vae] if getattr(self.codec, "vae", None) is not None else []),
                self.device)
        elif option == "group_offload":
            from diffusers.hooks import apply_group_offloading

            self.transformer.to("cpu")
            apply_group_offloading(self.transformer, onload_device=self.device, offload_device=torch.device("cpu"),
                                   offload_type="block_level", num_blocks_per_group=1)
        return option

    def save_pretrained(self, path: str | Path) -> None:
        """transformer/, scheduler/, config.yaml; and vae/ for a learned codec of a model made from scratch
        (a toy model's own CogVideoX VAE), so the folder is whole as a real one is."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(path / "transformer", safe_serialization=True)
        self.scheduler.save_pretrained(path / "scheduler")
        tc, model = self.config.train, self.config.model
        if model.codec.kind == "cogvideox" and not model.pretrained:
            self.codec.vae.save_pretrained(path / "vae", safe_serialization=True)
            model = replace(model, codec=replace(model.codec, path=None))  # found in the folder when loaded
        cfg = replace(self.config, data=replace(self.config.data, dataset=None),  # no local paths in a shipped model
                      model=model, train=replace(tc, teacher=None, validation=replace(tc.validation, dataset=None)))
        (path / "config.yaml").write_text(dump_config(cfg))

    # ------------------------------------------------------------------ steps

    def check_inputs(self, reference: str | Path | np.ndarray, driving: str | Path, steps: int, size: int,
                     out_size: int | None = None) -> int:
        """Returns the working size, rounded to what the model takes (with a note) when needed."""
        if out_size is not None and not (isinstance(out_size, int) and 16 <= out_size <= 4096):
            raise InputError(f"--out-size must be an integer from 16 to 4096 pixels, got {out_size}")
        if not isinstance(reference, np.ndarray) and not Path(reference).is_file():
            raise InputError(f"reference image not found: {reference}")
        if not Path(driving).is_file():
            raise InputError(f"driving video not found: {driving}")
        max_steps = int(self.scheduler.config.num_train_timesteps)
        if not 1 <= steps <= max_steps:
            raise InputError(f"--steps must lie between 1 and {max_steps} (the scheduler's training timesteps), "
                             f"got {steps}")
        check_size(self.config, size)
        unit = self.codec.spatial_factor * spatial_patch(self.transformer)
        rounded = max(unit, int(round(size / unit)) * unit)
        if rounded != size:
            print(f"note: size {size} rounded to {rounded} (a multiple of {unit} for this model)")
        return rounded

    def resolve_settings(self, steps, seed, guidance_scale, window_overlap, keep_background, window_fusion):
        """The call's arguments over the config's `inference` settings, checked: (inference, steps,
        seed, guidance)."""
        import math

        inf = self.config.inference
        if window_overlap is not None:
            inf = replace(inf, window_overlap=window_overlap)
        if keep_background is not None:
            inf = replace(inf, keep_background=bool(keep_background))
        if window_fusion is not None:
            if window_fusion not in ("latent", "pixel"):
                raise InputError(f"window fusion must be latent or pixel, got {window_fusion!r}")
            inf = replace(inf, window_fusion=window_fusion)
        if inf.window_fusion == "latent" and is_wan(self.transformer):
            raise InputError("window fusion latent is not available on a Wan backbone yet: use --window-fusion pixel "
                             "(windows denoised one by one, blended in pixels)")
        if not (0.0 <= inf.keep_background_margin <= 0.5):
            raise InputError(f"inference.keep_background_margin must be in [0, 0.5] (a fraction of the frame), "
                             f"got {inf.keep_background_margin}")
        steps = inf.steps if steps is None else steps
        seed = inf.seed if seed is None else seed
        check_seed(seed)
        guidance = inf.guidance_scale if guidance_scale is None else guidance_scale
        if not (isinstance(guidance, (int, float)) and math.isfinite(guidance) and guidance >= 1.0):
            raise InputError(f"--guidance must be a finite number >= 1 (1 = off), got {guidance}")
        return inf, steps, seed, guidance

    def extract_driving_cues(self, reference: np.ndarray, driving, size: int, info, tmp: Path, progress: bool,
                             **detectors):
        """Step 2: the Driving Cue Triplet of the whole video, streamed to `tmp`/cues.safetensors
        (arrays only). Returns the cue report."""
        cues_cfg = replace(self.config.cues, size=size)
        report, _ = extract_cues(reference, lambda: iter_frames(driving), cues_cfg,
                                 lambda r, m: CueFileSink(tmp, size, info.fps_fraction, info.num_frames, r, m,
                                                          videos=False),
                                 fps=info.fps, num_frames_hint=info.num_frames, progress=progress,
                                 variable_frame_rate=info.variable_frame_rate, **detectors)
        return report

    @torch.no_grad()
    def encode_reference(self, spool: Path, seed: int) -> tuple[np.ndarray, torch.Tensor]:
        """Step 4a: the letterboxed reference (as the cues saw it) and its latent (the VAE posterior
        drawn from the seed's own generator)."""
        with safe_open(str(spool), "np") as f:
            ref_lb = f.get_tensor("reference")
        ref_latent = self.codec.encode_reference(video_tensor(ref_lb[None]), torch.Generator().manual_seed(seed))
        return ref_lb, ref_latent.to(self.device)

    @torch.no_grad()
    def decode_frames(self, latents: torch.Tensor) -> np.ndarray:
        """Step 6a: one window's latents to float frames (F, S, S, 3) in [0, 255]."""
        video = self.codec.decode(latents.cpu())[0]  # (F, 3, S, S) in [-1, 1]
        return ((video.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()

    @torch.no_grad()
    def encode_window(self, spool: Path, start: int, length: int, num_frames: int) -> dict[str, torch.Tensor]:
        """The window's cues through the codec; frames past the end repeat the last frame."""
        idx = [min(i, num_frames - 1) for i in range(start, start + length)]
        with safe_open(str(spool), "np") as f:
            def take(key):
                first, last = idx[0], idx[-1] + 1
                block = f.get_slice(key)[first:last]
                return block[[i - first for i in idx]]

            pose, face = take("pose_cue"), take("face_cue")
            body, fmask = mask_from_uint8(take("body_mask")), mask_from_uint8(take("face_mask"))
        latents = cue_latents(self.codec, pose, face, body, fmask)
        return {**{k: v.to(self.device) for k, v in latents.items()}, "pose_cue": pose}

    @staticmethod
    def window_pose_cue(spool: Path, start: int, length: int, num_frames: int) -> np.ndarray:
        idx = [min(i, num_frames - 1) for i in range(start, start + length)]
        with safe_open(str(spool), "np") as f:
            block = f.get_slice("pose_cue")[idx[0]:idx[-1] + 1]
        return block[[i - idx[0] for i in idx]]

    @torch.no_grad()
    def _denoise_fused(self, spool: Path, tmp: Path, starts: list[int], n: int, ref_latent: torch.Tensor, seed: int,
                       steps: int, guidance: float, progress: bool, callback, seconds: dict, text: torch.Tensor):
        """All windows denoised together (inference.window_fusion = latent): their cues encoded once
        into files, the shared latent sequence in files (model/sampling.py sample_fused_latents)."""
        from safetensors.torch import load_file, save_file

        window = self.config.model.frames
        layout, total = fused_window_layout(starts, window, self.codec.temporal_factor)
        cue_dir = tmp / "window_cues"
        cue_dir.mkdir()
        t0 = time.perf_counter()
        for wi, s in enumerate(starts):
            enc = self.encode_window(spool, s, window, n)
            save_file({k: enc[k].detach().cpu().contiguous() for k in CUE_KEYS}, str(cue_dir / f"{wi}.safetensors"))
        seconds["codec"] += time.perf_counter() - t0

        def window_cues(wi: int) -> dict[str, torch.Tensor]:
            return {k: v.to(self.device) for k, v in load_file(str(cue_dir / f"{wi}.safetensors")).items()}

        def on_step(i: int, total_steps: int) -> None:
            if callback is not None:
                callback("denoise", i, total_steps)

        t0 = time.perf_counter()
        fused, layout = sample_fused_latents(self.transformer, self.scheduler, ref_latent, window_cues, layout, total,
                                             text, steps, torch.Generator().manual_seed(seed * 1_000_003), guidance,
                                             progress, workdir=tmp, callback=on_step,
                                             fused_steps=self.config.inference.fused_steps)
        seconds["transformer"] += time.perf_counter() - t0
        return fused, layout

    def encode_prompt(self, prompt: str | None = None) -> torch.Tensor:
        """The prompt's T5 embedding (cached by the encoder; None: `model.text.prompt`); the T5 weights
        are then released when `inference.release_text_encoder` (not needed again for this prompt)."""
        enc = self.text_encoder([self.config.model.text.prompt if prompt is None else prompt], device=self.device)
        if self.config.inference.release_text_encoder and hasattr(self.text_encoder, "release"):
            self.text_encoder.release()
        return enc

    @torch.no_grad()
    def denoise(self, reference_latent: torch.Tensor, cues: dict[str, torch.Tensor], generator: torch.Generator,
                steps: int, guidance_scale: float, progress: bool = False,
                encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        enc = self.encode_prompt() if encoder_hidden_states is None else encoder_hidden_states
        return sample_latents(self.transformer, self.scheduler, reference_latent, cues, enc, steps, generator,
                              guidance_scale, progress)

    # ------------------------------------------------------------------ the call

    def __call__(self, reference: str | Path | np.ndarray, driving: str | Path, out: str | Path, *,
                 size: int | None = None, out_size: int | None = None,
                 segmenter=None, face_detector=None, reference_mask: np.ndarray | None = None, keypoints=None,
                 window_overlap: int | None = None,
                 steps: int | None = None, seed: int | None = None, guidance_scale: float | None = None,
                 window_fusion: str | None = None, prompt: str | None = None,
                 keep_background: bool | None = None,
                 side_by_side: str | Path | None = None, return_frames: bool = False,
                 progress: bool = True, callback: Callable[[str, int, int], None] | None = None) -> AnimationResult:
        r"""
        Animate the person in `reference` with the motion and expressions of `driving`. Every setting
        left at `None` comes from the model's config (`model.size`, `inference.*`).

        Args:
            reference (`str`, `Path` or `np.ndarray`):
                The reference photo: an image file, or an (H, W, 3) uint8 RGB array.
            driving (`str` or `Path`):
                The driving video, any length; the result has its frame count, frame rate and audio.
            out (`str` or `Path`):
                Where the result video goes; written under a temporary name and moved into place when
                complete (nothing is left behind on an error or a cancel).
            size (`int`, *optional*):
                Step 1. The working size in pixels (square, letterboxed), rounded to what the model takes.
            out_size (`int`, *optional*):
                Step 1. The written video's longer side in pixels (enlarged with Lanczos from the
                working size); default: the working size.
            segmenter, face_detector, keypoints (*optional*):
                Step 2. Detectors in place of the embedded ones (`cues.detectors.Detectors` gives
                ground-truth ones for the puppet world); `keypoints` only for the skeleton ablation.
            reference_mask (`np.ndarray`, *optional*):
                Step 2. The reference person's (H, W) mask, in place of segmenting the photo.
            window_overlap (`int`, *optional*):
                Step 3. Frames shared by neighbouring windows (moved onto the codec's frame grid).
            steps (`int`, *optional*):
                Step 5. Denoising steps.
            seed (`int`, *optional*):
                Step 5. The seed of the initial noise and of the codec's sampling; the same seed gives the
                same video.
            guidance_scale (`float`, *optional*):
                Step 5. Classifier-free guidance on the driving cues (1: off).
            window_fusion (`str`, *optional*):
                Step 5. `"pixel"`: each window denoised alone and blended after decoding; `"latent"`: all
                windows denoised together, their shared latent frames fused at every step.
            prompt (`str`, *optional*):
                Step 5. The text prompt (a caption of the reference: the person's appearance and the
                scene); default `model.text.prompt`. Models from scratch have no text encoder and ignore it.
            keep_background (`bool`, *optional*):
                Step 7. Outside the person's region, the reference photo's own pixels.
            side_by_side (`str` or `Path`, *optional*):
                Step 8. Also write reference | driving | pose cue | result to this path.
            return_frames (`bool`, defaults to `False`):
                Step 8. Also return the frames as written, before the video encoder (memory grows with
                the video: for tests and short clips).
            progress (`bool`, defaults to `True`):
                Progress bars on the terminal.
            callback (`Callable[[str, int, int], None]`, *optional*):
                Called as work advances with (stage, done, total): ("cues", 0, 1) before the cues,
                ("denoise", i, steps) after each step when windows are fused in latent space,
                ("windows", k, n) after each of the n windows is written. An exception it raises (a
                cancel) stops the call; nothing is written then.

        Returns:
            [`AnimationResult`]: the written path, frame count, fps, size, windows, seconds per stage,
            the cue report and warnings (and the frames when `return_frames`).
        """
        # 1. check inputs and settings
        inf, steps, seed, guidance = self.resolve_settings(steps, seed, guidance_scale, window_overlap,
                                                           keep_background, window_fusion)
        size = self.check_inputs(reference, driving, steps, self.config.model.size if size is None else size, out_size)
        job = _Job(reference if isinstance(reference, np.ndarray) else load_image(reference), driving, Path(out),
                   size, out_size, inf, steps, seed, guidance, prompt, side_by_side, return_frames, progress, callback)
        detectors = dict(segmenter=segmenter, face_detector=face_detector, reference_mask=reference_mask,
                         keypoints=keypoints)
        return self._run(job, detectors)

    def _run(self, job: "_Job", detectors: dict) -> AnimationResult:
        """Steps 2-8 of `__call__` for one checked call, in a temporary folder next to the output."""
        info = probe_video(job.driving)  # a corrupt or unreadable video is an InputError here
        overlap = self._overlap(job.inf.window_overlap)
        seconds = {"cues": 0.0, "codec": 0.0, "transformer": 0.0, "write": 0.0}
        with work_dir(job.out.parent) as tmpdir:
            tmp = Path(tmpdir)
            spool = tmp / CUE_ARRAYS
            # 2. driving cues, streamed to disk
            if job.callback is not None:
                job.callback("cues", 0, 1)
            t0 = time.perf_counter()
            report = self.extract_driving_cues(job.reference, job.driving, job.size, info, tmp, job.progress,
                                               **detectors)
            seconds["cues"] = time.perf_counter() - t0
            n, framing = report.num_frames, Framing.of(job.reference, job.size, job.out_size)
            # 4a. the reference through the codec
            t0 = time.perf_counter()
            ref_lb, ref_latent = self.encode_reference(spool, job.seed)
            if hasattr(self.codec, "reference_inputs"):
                job.reference_inputs = {k: v.to(self.device) for k, v in self.codec.reference_inputs(ref_lb).items()}
            seconds["codec"] += time.perf_counter() - t0
            # 3. windows on the codec's frame grid
            starts = windows_covering(n, self.config.model.frames, overlap, self.codec.temporal_factor)
            keeper = BackgroundKeeper(spool, ref_lb, job.inf.keep_background_margin) if job.inf.keep_background \
                else None
            writers = Writers(tmp, job.out.suffix, job.driving, info, job.size, framing, ref_lb,
                              job.side_by_side is not None, job.return_frames)
            try:
                done = self._render_windows(job, tmp, spool, starts, n, ref_latent, writers, keeper, seconds)
            finally:
                writers.close()
            if done != n:
                raise RuntimeError(f"wrote {done} of {n} frames")
            writers.move_to(job.out, job.side_by_side)
        seconds = {k: round(v, 3) for k, v in seconds.items()}
        warnings = [w for w in (guidance_warning(self.config, job.guidance),) if w] + report.warnings
        return AnimationResult(job.out, n, info.fps, framing.fw, framing.fh, len(starts), seconds, report.as_dict(),
                               np.stack(writers.kept) if writers.kept else None, warnings)

    def _render_windows(self, job: "_Job", tmp: Path, spool: Path, starts: list[int], n: int,
                        ref_latent: torch.Tensor, writers: Writers, keeper, seconds: dict) -> int:
        """Steps 5-8 window by window: denoise (alone, or all together with latent fusion), decode,
        blend, keep the background, write. Returns the number of frames written."""
        text, fused = self.encode_prompt(job.prompt), None  # 5. the prompt, once
        if job.inf.window_fusion == "latent" and len(starts) > 1:
            fused = self._denoise_fused(spool, tmp, starts, n, ref_latent, job.seed, job.steps, job.guidance,
                                        job.progress, job.callback, seconds, text)
        blender = WindowBlender(starts, self.config.model.frames, n)
        bar = tqdm(total=len(starts), desc="animate", unit="window", disable=not job.progress, leave=False)
        try:
            for wi, s in enumerate(starts):
                latents, pose_cue = self._window_latents(wi, s, spool, n, ref_latent, job.seed, job.steps,
                                                         job.guidance, fused, seconds, text, job.reference_inputs)
                # 6. decode and blend; 7. keep the background; 8. write
                t0 = time.perf_counter()
                frames = self.decode_frames(latents)
                seconds["codec"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                writers.add_poses(s, pose_cue, n)
                for index, blended in blender.add(wi, frames):
                    if keeper is not None:
                        blended = keeper(index, blended)
                    writers.write(index, np.clip(blended + 0.5, 0, 255).astype(np.uint8))
                seconds["write"] += time.perf_counter() - t0
                bar.update()
                if job.callback is not None:
                    job.callback("windows", wi + 1, len(starts))
        finally:
            bar.close()
        return blender.done

    def _overlap(self, requested: int) -> int:
        """The window overlap in frames, within the window; a note (once) where the codec's frame grid
        moves it."""
        window = self.config.model.frames
        overlap = min(max(0, requested), window - 1)
        step = window_step(window, overlap, self.codec.temporal_factor)
        if window - step != overlap and not getattr(self, "_overlap_noted", False):
            self._overlap_noted = True
            print(f"note: window overlap {overlap} -> {window - step} frames (window starts on the codec's "
                  f"{self.codec.temporal_factor}-frame grid)")
        return overlap

    def _window_latents(self, wi: int, start: int, spool: Path, n: int, ref_latent: torch.Tensor, seed: int,
                        steps: int, guidance: float, fused, seconds: dict, text: torch.Tensor,
                        reference_inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, np.ndarray]:
        """Window `wi`'s clean latents and its Pose Cue: 4b. its cues through the codec, 5. denoised
        alone (with `reference_inputs`, a Wan2.1-I2V model's); or taken from the windows denoised
        together (`fused`: latents and their layout)."""
        window = self.config.model.frames
        if fused is not None:
            latents_by_frame, layout = fused
            target = torch.from_numpy(np.stack([latents_by_frame[j] for j in layout[wi]]))[None]
            latents = from_diffusion_target(self.transformer, target, ref_latent.float().cpu())
            return latents, self.window_pose_cue(spool, start, window, n)
        t0 = time.perf_counter()
        enc_cues = self.encode_window(spool, start, window, n)
        seconds["codec"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(seed * 1_000_003 + wi)
        latents = self.denoise(ref_latent, {**enc_cues, **reference_inputs}, g, steps, guidance,
                               encoder_hidden_states=text)
        seconds["transformer"] += time.perf_counter() - t0
        return latents, enc_cues["pose_cue"]


