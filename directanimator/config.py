"""Configuration: one dataclass per concern, loaded strictly from YAML.

An unknown key is an error (a typo must never fall back to a silent default), and the resolved
config is written next to every output it produced so a result can always be traced to its settings.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .errors import InputError

T = TypeVar("T")


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, (int, float)) and low <= value <= high):
        raise InputError(f"config key '{key}' must lie between {low:g} and {high:g}, got {value!r}")


@dataclass
class SegmentationConfig:
    """Person segmentation (paper 3.1: "isolate the foreground regions")."""

    # MediaPipe selfie segmentation: 0 = general (256x256 input), 1 = landscape (144x256). The
    # general model is much better on full-body people once zoomed in (see `roi`).
    model_selection: int = 0
    # A pixel is foreground when the model's probability is at least this.
    threshold: float = 0.5
    # Connected components smaller than this fraction of the frame are ignored as noise.
    min_component_area: float = 0.0005
    # Track the subject: segment (and detect the face in) a square crop around the previous
    # frame's subject, so small people in wide frames fill the model's input.
    roi: bool = True
    # The crop's side is this times the subject box's longer side.
    roi_expand: float = 1.4
    # The reference photo must hold a person: MediaPipe's pose and face detectors' confidence on it
    # (cues/presence.py, calibrated on photos with and without people); 0 = no check.
    min_person_confidence: float = 0.5
    # Segmentation and face detection run on frames letterboxed to the source's longer side capped at
    # detect_size (never below cues.size), then masks and boxes are resized to cues.size: at a small
    # working size (64 px) a full-body person is a few pixels tall and the detectors miss them (faces
    # in 2 of 45 frames of the bundled 256 px walk clip at 64 px, 45 of 45 at 256). Ground-truth masks
    # and boxes (the puppet world) are used at the working size.
    detect_size: int = 512
    # A frame in which the selfie segmenter finds no one (a whole body small in a wide or tall frame,
    # before tracking has started) is searched with MediaPipe Pose's full-body detector, and the
    # segmenter runs again on a crop around the body it finds (BENCHMARKS.md, "Full-body people").
    seed_with_pose: bool = True
    # which person to follow when there are several (cues/segment.py SubjectRule): auto / largest,
    # center, N (the N-th from the left, 0 first) or X,Y (a point of the source frame, in pixels);
    # the driving video's in its first frame with a person (then tracked), and the reference photo's
    subject: str = "auto"
    reference_subject: str = "auto"

    def __post_init__(self) -> None:
        from .cues.segment import SubjectRule

        SubjectRule(self.subject), SubjectRule(self.reference_subject)  # a bad spec is an error here
        _check_range("cues.segmentation.model_selection", self.model_selection, 0, 1)
        _check_range("cues.segmentation.detect_size", self.detect_size, 16, 4096)
        _check_range("cues.segmentation.threshold", self.threshold, 0.0, 1.0)
        _check_range("cues.segmentation.min_component_area", self.min_component_area, 0.0, 1.0)
        _check_range("cues.segmentation.roi_expand", self.roi_expand, 1.0, 10.0)
        _check_range("cues.segmentation.min_person_confidence", self.min_person_confidence, 0.0, 1.0)


@dataclass
class QualityConfig:
    """Dropping low-quality segmentation frames (paper 3.1: "we discard low-quality segmentation
    results, forcing the model to rely on adjacent results")."""

    # A frame whose quality score (0..1, see cues/quality.py) is below this is dropped.
    threshold: float = 0.4
    # Relative area change against the neighbours at which the area term reaches 0.
    max_area_jump: float = 0.6

    def __post_init__(self) -> None:
        _check_range("cues.quality.threshold", self.threshold, 0.0, 1.0)
        _check_range("cues.quality.max_area_jump", self.max_area_jump, 1e-6, 100.0)


@dataclass
class PoseCueConfig:
    """Pose Cue: segmented foreground -> grayscale -> frequency-domain low-pass (paper A.2)."""

    # gray_lowpass: the paper's Pose Cue; gray, rgb: Table 3's S4 and S3; skeleton: COCO-17 keypoints
    # drawn as a coloured stick figure, moved onto the reference person (the S5 arm, cues/skeleton.py)
    mode: Literal["gray_lowpass", "gray", "rgb", "skeleton"] = "gray_lowpass"
    # skeleton mode with given keypoints (the puppet world): add the errors skeleton detectors make
    # (left/right confused when facing away, occluded limbs dropped or misplaced)
    skeleton_errors: bool = False
    # Gaussian frequency response H(f) = exp(-f^2 / (2 fc^2)) with fc = cutoff_cycles / size cycles
    # per pixel: the cutoff is relative to the frame, so the cue is blurred alike at every working
    # size (a spatial Gaussian of sigma = size / (2 pi cutoff_cycles) pixels). 20.48 cycles per
    # frame = 0.04 cycles/pixel at 512 px, sigma 4 px; at 64 px sigma 0.5 px. (Until 0.2 the key
    # was `cutoff` in cycles per pixel of the working size, which at 64 px blurred with sigma = 6%
    # of the frame.)
    cutoff_cycles: float = 20.48

    def __post_init__(self) -> None:
        if not self.cutoff_cycles > 0:
            raise InputError(f"cues.pose.cutoff_cycles must be > 0 (cycles per frame side), got {self.cutoff_cycles}")


@dataclass
class FaceCueConfig:
    """Face Cue: face detected, enlarged and centred (paper 3.1, A.2)."""

    # MediaPipe face detection runs twice at most: the short-range model on an upscaled head crop,
    # then the full-range model on the subject's crop (see cues/face.py SubjectFaceFinder).
    min_confidence: float = 0.5
    # The square crop is the face box enlarged by this factor (1.0 = the box side doubled).
    margin: float = 0.6
    # Gaps without a detection up to this many frames are linearly interpolated.
    max_gap: int = 8
    # In a video the full-range fallback backs off while it keeps failing: after k failures in a row
    # it sits out the next min(k, fallback_max_skip) frames that need it (0: asked on every frame the
    # short range misses). Below max_gap, a face it would have found there is interpolated.
    fallback_max_skip: int = 3
    # Half-width in frames of the moving average that smooths box centre and size over time.
    smooth_radius: int = 2
    # Ablation S2 of Table 3: False keeps the face pixels where they are instead of enlarging and
    # centring them.
    enlarge_and_center: bool = True

    def __post_init__(self) -> None:
        _check_range("cues.face.min_confidence", self.min_confidence, 0.0, 1.0)
        _check_range("cues.face.margin", self.margin, 0.0, 10.0)
        _check_range("cues.face.max_gap", self.max_gap, 0, 10_000)
        _check_range("cues.face.fallback_max_skip", self.fallback_max_skip, 0, 10_000)
        _check_range("cues.face.smooth_radius", self.smooth_radius, 0, 10_000)


@dataclass
class LocationCueConfig:
    """Location Cue: body and face masks aligned to the reference (eqs 9-12), grid-softened."""

    mode: Literal["soft", "hard", "off"] = "soft"
    # Side of one grid cell in pixels at the working size.
    grid_cell: int = 16

    def __post_init__(self) -> None:
        _check_range("cues.location.grid_cell", self.grid_cell, 1, 4096)


@dataclass
class CuesConfig:
    """Everything `directanimator cues` needs."""

    # Working size: frames are letterboxed into size x size.
    size: int = 512
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    pose: PoseCueConfig = field(default_factory=PoseCueConfig)
    face: FaceCueConfig = field(default_factory=FaceCueConfig)
    location: LocationCueConfig = field(default_factory=LocationCueConfig)

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 4096 or self.size % 8:
            raise InputError(f"cues.size must be a multiple of 8 between 32 and 4096, got {self.size}")


@dataclass
class TransformerConfig:
    """CogVideoX transformer sizes (diffusers' CogVideoXTransformer3DModel arguments). Channels come
    from the codec (in = 2 x latent channels for image-to-video, out = latent channels). Ignored when
    `model.pretrained` is set: the checkpoint's own config.json rules then."""

    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    time_embed_dim: int = 128
    text_embed_dim: int = 32
    max_text_seq_length: int = 8
    patch_size: int = 2
    patch_size_t: int | None = None
    ofs_embed_dim: int | None = None
    use_rotary_positional_embeddings: bool = False
    use_learned_positional_embeddings: bool = False
    patch_bias: bool = True
    attention_bias: bool = True
    # in latent units (sample_frames in video frames, a diffusers quirk); the size positional
    # embeddings are precomputed for, any other size is computed on the fly
    sample_height: int = 16
    sample_width: int = 16
    sample_frames: int = 9
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    norm_eps: float = 1e-5
    dropout: float = 0.0


@dataclass
class CodecConfig:
    """Pixels <-> latents (model/codec.py)."""

    kind: Literal["pixel_shuffle", "cogvideox", "wan"] = "pixel_shuffle"
    # pixel_shuffle: pixels per latent cell side; cogvideox: fixed by the VAE (8)
    spatial_factor: int = 4
    # pixel_shuffle: DCT frequencies kept per cell side / per 4-frame group (None = all: lossless)
    keep_spatial: int | None = None
    keep_temporal: int | None = None
    scale: float = 1.0
    # pixel_shuffle: one more factor per latent channel (None = all 1). The DCT codec puts ~96% of
    # its energy in the 3 DC channels, so under a shared scale the noise schedule drowns the other
    # channels at almost every timestep; per-channel factors of 1/std give every channel unit
    # variance, as a VAE's latents roughly have (see experiments/reports/scaling.md).
    channel_scale: list[float] | None = None
    # cogvideox: local folder with vae/ (or the vae folder itself)
    path: str | None = None
    slicing: bool = True
    tiling: bool = False


@dataclass
class TextConfig:
    """Text conditioning (model/text.py): T5 from a local folder, or a null prompt when None."""

    encoder_path: str | None = None
    prompt: str = ""
    # A clip's own caption (clips/<id>/caption.txt, written by `directanimator caption`) instead of
    # `prompt`, encoded by `preprocess` into the clip's cache; every clip of the dataset needs one then.
    use_captions: bool = True
    # What the captioning model (Qwen2-VL / Qwen2.5-VL) is asked on `caption_frames` frames spread over
    # a clip: the person's appearance and the scene, not the motion (the cues carry it)
    caption_prompt: str = ("Describe the person in these frames: their appearance, clothes and hair, and the scene "
                           "and background around them, in one or two sentences. Do not describe the motion.")
    caption_frames: int = 3
    caption_max_tokens: int = 60


@dataclass
class ModelConfig:
    """The CueFusion DiT and its codec (paper 3.1)."""

    # Local CogVideoX / CogVideoX1.5 I2V folder, or with backbone wan a Wan2.x folder (diffusers
    # layout): the transformer starts from its weights.
    pretrained: str | None = None
    # the diffusion transformer the cue stream is built into: CogVideoX (model/transformer.py; from
    # scratch or a folder) or Wan (model/wan.py; from a folder, model.pretrained, with codec.kind wan)
    backbone: Literal["cogvideox", "wan"] = "cogvideox"
    injection: Literal["cuefusion", "concat", "cross_attention", "none"] = "cuefusion"
    use_face_cue: bool = True
    use_location_cue: bool = True
    # where the reference latent enters (model/transformer.py i2v_hidden_states): first_frame, as
    # CogVideoX I2V was trained (keep it for a pretrained model); all_frames for models from scratch
    reference_layout: Literal["first_frame", "all_frames"] = "first_frame"
    # what is diffused (model/sampling.py diffusion_target): the video latents (CogVideoX; keep it for a
    # pretrained model), or their difference from the reference latent, so a static background is 0
    # and a small model need not carry the reference through its width to reproduce it
    reference_residual: bool = False
    gradient_checkpointing: bool = False
    # Video frames and square pixel size of one training sample / generation window.
    frames: int = 9
    size: int = 64
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self) -> None:
        if self.frames < 1 or (self.frames - 1) % 4:
            raise InputError(f"model.frames must be 1 + 4k (the codec groups 4 frames), got {self.frames}")
        if self.backbone == "wan":
            if self.codec.kind != "wan":
                raise InputError(f"model.backbone wan needs model.codec.kind wan (its own VAE), got {self.codec.kind}")
            if self.injection not in ("cuefusion", "none"):
                raise InputError(f"model.injection on a Wan backbone must be cuefusion or none, got {self.injection}")


@dataclass
class DataConfig:
    """Training data (data/): the on-disk dataset and its caches."""

    dataset: str | None = None
    # consecutive windows of model.frames frames are cut from each clip every `window_stride` frames
    # (None = model.frames: no overlap)
    window_stride: int | None = None
    # store cached latents in float16 (halves the cache; exact for the pixel-shuffle codec's range)
    cache_float16: bool = False
    num_workers: int = 0
    # dtype the CogVideoX VAE encodes the caches in (`preprocess --device cuda`: bfloat16 halves its
    # memory and time); part of the cache key, so training reads the caches it was built with.
    # The weights-free DCT codec is exact in float32 and ignores it.
    codec_dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclass
class PseudoFilterConfig:
    """Automated quality filter for pseudo driving clips (train/pseudo.py); a clip below any
    threshold is dropped, and the report says which."""

    # Calibrated on the puppet world against known degradation strengths (experiments/pseudo_filter.py,
    # experiments/reports/pseudo_filter.md): flicker, pose jitter and identity leak. Mask IoU, pose
    # consistency and face presence stay at their earlier values: on puppets they barely vary
    # (ground-truth masks and faces), so they cannot be calibrated there, and on real clips without
    # keypoints mask IoU is the only pose check.
    min_mask_iou: float = 0.5          # silhouette IoU with the source after eqs 9-10 alignment
    min_pose_consistency: float = 0.6  # 1 - normalised keypoint distance (or mask IoU without keypoints)
    min_face_presence: float = 0.7     # faces found in pseudo / faces found in source
    min_expression_consistency: float = 0.0  # correlation of mouth opening; 0 = off
    max_flicker: float = 4.6           # mean |f(t+1) - 2 f(t) + f(t-1)|, pseudo / source
    max_pose_jitter: float = 0.0134    # second difference of (pseudo - source) keypoints; 1e9 = off
    max_identity_leak: float = 0.17    # pseudo's colours moved towards the source's (0-1); 1 = off


@dataclass
class PseudoConfig:
    """Pseudo cross-ID driving cues (paper 3.2, A.2-A.3)."""

    generator: Literal["puppet", "directanimator", "external"] = "puppet"
    # pseudo references per driving clip, drawn uniformly from min..max (the paper: 0-3)
    min_per_clip: int = 0
    max_per_clip: int = 3
    # puppet generator: strength ranges of its degradations (synth/pseudo.py), drawn per clip
    max_blur: float = 0.5
    max_colour_drift: float = 0.5
    max_pose_jitter: float = 0.3
    max_identity_leak: float = 0.3
    # misalignment augmentation (A.2): the person in the pseudo pose cue scaled by 1 +- scale and
    # shifted by +- shift x size, while the Location Cue stays the source's
    misalign_scale: float = 0.15
    misalign_shift: float = 0.08
    external_manifest: str | None = None
    checkpoint: str | None = None  # directanimator generator: a same-ID run or checkpoint
    filter: PseudoFilterConfig = field(default_factory=PseudoFilterConfig)
    seed: int = 0


@dataclass
class S2XConfig:
    """Same2X alignment loss (eq 4)."""

    weight: float = 0.5                # lambda
    depth: int | None = None           # D; None = round(num_layers * 10 / 42), the paper's 10 of 42
    projector: bool = False            # a trainable Linear on the student's features (not in the paper)


@dataclass
class ValidationConfig:
    """Held-out validation during training (train/validation.py): a dataset with cross-ID triples
    and their true answer (a puppet world); None = off."""

    dataset: str | None = None
    triples: int = 16            # the first window of each of the first N triples
    every: int = 500             # optimizer steps between evaluations (and at the last step)
    sample_steps: int = 10       # DDIM steps of the validation samples
    # the metric that picks RUN/best/ (higher is better, except val_loss)
    select: Literal["val_moving_psnr", "val_person_psnr", "val_psnr", "val_ssim", "val_loss"] = "val_moving_psnr"


@dataclass
class LoraConfig:
    """LoRA on the backbone (train.trainable: lora; model/adapters.py), through peft."""

    rank: int = 64                     # UniAnimate-DiT trains rank 64-128
    alpha: float = 64.0
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_range("train.lora.rank", self.rank, 1, 4096)
        _check_range("train.lora.dropout", self.dropout, 0.0, 0.99)


@dataclass
class TrainConfig:
    """One trainer for both stages (train/trainer.py)."""

    stage: Literal["same_id", "cross_id"] = "same_id"
    # cross_id: where the student starts: the same-ID teacher's weights, or the base model
    init: Literal["same_id", "base"] = "same_id"
    teacher: str | None = None
    # either stage: the student starts from these weights instead (a run, checkpoint, model or pipeline
    # folder of this config's model; "embedded": the shipped demo model), with a new optimizer and the
    # warm-up; the held-out validation then also scores the start (a row at step 0)
    init_from: str | None = None
    max_steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    # after the linear warm-up: constant, or cosine decay to lr_min_ratio x lr at max_steps
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_min_ratio: float = 0.1
    weight_decay: float = 1e-4
    # adamw8bit: bitsandbytes' 8-bit AdamW (its moments in 8 bits, block-wise scaled: 2 bytes per
    # trained parameter instead of 8); needs the bnb extra; single process or DDP, not DeepSpeed/FSDP
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    warmup_steps: int = 50
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    ema_decay: float = 0.0             # 0 = no EMA
    checkpoint_every: int = 500
    keep_last: int = 2
    log_every: int = 1
    seed: int = 0
    max_nonfinite_in_row: int = 10
    # the cues of a training sample are dropped (zeros) with this probability, for classifier-free
    # guidance on the cues at inference
    cue_dropout: float = 0.0
    # the denoising loss weighted towards the person: each latent cell's squared error counts
    # 1 + person_loss_weight x its Location Cue value (the body mask on the latent grid), the sum
    # divided by the weights' sum; 0 = the plain mean. The moved limbs are a few percent of the
    # cells; experiments/reports/fit_probe.md measures what a weight buys. Validation losses stay the
    # plain mean
    person_loss_weight: float = 0.0
    # the share of a batch's samples whose noise level is one the inference sampler visits
    # (inference.scheduler at inference.steps: dpm at 2 steps visits t = 999 and 499), the rest
    # uniform over all T; 0 = uniform only, as CogVideoX fine-tuning trains. A few-step sampler uses
    # the model at a handful of noise levels; this spends more of the training there. CogVideoX only
    sampler_timesteps: float = 0.0
    # what is trained (model/adapters.py): every weight; LoRA adapters on the backbone's attention
    # plus the cue modules; or the cue modules only. The partial modes keep the backbone frozen and
    # save the trained part on its own (checkpoint/adapter/), loadable by animate merged or not.
    trainable: Literal["full", "lora", "cue_only"] = "full"
    # the frozen backbone of a lora / cue_only run held in bfloat16 instead of float32: half its memory
    # (11 GiB instead of 22 at 5B; CogVideoX's own weights are bf16, so nothing is lost there).
    # Needs mixed_precision bf16 (the trained part stays float32); not under FSDP
    frozen_dtype: Literal["float32", "bfloat16"] = "float32"
    lora: LoraConfig = field(default_factory=LoraConfig)
    s2x: S2XConfig = field(default_factory=S2XConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        _check_range("train.person_loss_weight", self.person_loss_weight, 0.0, 1000.0)
        _check_range("train.sampler_timesteps", self.sampler_timesteps, 0.0, 1.0)


@dataclass
class InferenceConfig:
    """`directanimator animate` (pipeline/)."""

    steps: int = 50
    scheduler: Literal["ddim", "dpm"] = "ddim"
    # classifier-free guidance on the driving cues (pose, face and location dropped together);
    # 1.0 = off. Useful only for models trained with train.cue_dropout > 0.
    guidance_scale: float = 1.0
    # long videos: windows of model.frames frames overlapping by this many, blended with triangular
    # weights (MimicMotion: 6 of 72, StableAnimator: 4 of 16). Rounded so windows start on the
    # codec's 4-frame grid: model.frames - overlap a multiple of 4 (9 frames: 1 or 5; 49: 5, 9, ...)
    window_overlap: int = 5
    # how overlapping windows are joined: pixel = each window denoised alone, the decoded frames
    # cross-faded; latent = denoised together, every shared latent frame the weighted mean of the
    # windows' predictions at every step, from one draw of noise (MimicMotion, StableAnimator;
    # model/sampling.py sample_fused_latents). With the 9-frame demo model latent fusion measured no
    # better than the cross-fade (BENCHMARKS.md, benchmarks/window_seams.py), so pixel stays the default
    window_fusion: Literal["latent", "pixel"] = "pixel"
    # with window_fusion latent: fuse the windows at the first N denoising steps only, then each window
    # goes on alone from the fused state (and the decoded windows are cross-faded as with pixel);
    # 0 = only the initial noise shared by overlapping windows; None = every step
    fused_steps: int | None = None
    seed: int = 0
    # keep the reference's background: outside the region the person occupies (the Location Cue's
    # body mask of each frame united with the reference person's mask, grown by `keep_background_margin`
    # of the frame size and feathered over as much again) every output pixel is the reference photo's,
    # exactly; inside, the model's. For a static camera, as in the reference photo; off for a moving one.
    keep_background: bool = False
    keep_background_margin: float = 0.05
    # GPU memory savers for the transformer (pipeline/pipeline.py `apply_memory_option`): none; fp8 = weights
    # stored in float8 (e4m3), each layer cast to the compute dtype when it runs (diffusers'
    # layerwise casting: half of bf16's weight memory); group_offload = weights in CPU memory, one
    # block at a time brought to the GPU (diffusers' group offloading: least memory, slowest); auto =
    # the first of none, fp8, group_offload whose estimate fits the GPU's free memory (printed);
    # model_offload = each model (VAE, transformer) on the GPU only while it runs, in CPU memory
    # otherwise (diffusers' model CPU offload; the transformer must fit alone)
    memory: Literal["auto", "none", "fp8", "group_offload", "model_offload"] = "auto"
    # free the T5 encoder's weights once the prompt is encoded (9.5 GB in bf16 for CogVideoX's T5-XXL);
    # the embedding stays cached, a new prompt loads T5 again
    release_text_encoder: bool = True


@dataclass
class Config:
    """The root of every YAML file in configs/. Sections not given keep their defaults."""

    cues: CuesConfig = field(default_factory=CuesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


def _check_literal(value: Any, tp: Any, where: str) -> None:
    allowed = typing.get_args(tp)
    if value not in allowed:
        raise InputError(f"config key '{where}' must be one of {list(allowed)}, got {value!r}")


def _migrate_cues(data: dict[str, Any]) -> dict[str, Any]:
    """Configs written before 0.2 give `pose.cutoff` in cycles per pixel of the working size; the
    same filter is `pose.cutoff_cycles = cutoff x size` (so old checkpoints keep their cues)."""
    pose = data.get("pose")
    if isinstance(pose, dict) and "cutoff" in pose and "cutoff_cycles" not in pose:
        pose = dict(pose)
        cutoff = pose.pop("cutoff")
        size = data.get("size", CuesConfig.size)
        if isinstance(cutoff, (int, float)) and isinstance(size, int):
            pose["cutoff_cycles"] = float(cutoff) * size
        data = {**data, "pose": pose}
    return data


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(f"config section '{where or 'root'}' must be a mapping, got {type(data).__name__}")
    if cls is CuesConfig:
        data = _migrate_cues(data)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise InputError(
            f"unknown config key '{prefix}{unknown[0]}' (known keys here: {', '.join(sorted(known))})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        args = typing.get_args(tp)
        if type(None) in args and len(args) == 2:  # X | None
            if value is None:
                kwargs[name] = None
                continue
            tp = next(a for a in args if a is not type(None))
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, key)
        elif typing.get_origin(tp) is Literal:
            _check_literal(value, tp, key)
            kwargs[name] = value
        elif tp is bool:
            if not isinstance(value, bool):
                raise InputError(f"config key '{key}' must be true or false, got {value!r}")
            kwargs[name] = value
        elif tp in (int, float, str):
            ok = isinstance(value, tp) or (tp is float and isinstance(value, int))
            if not ok or isinstance(value, bool):
                raise InputError(f"config key '{key}' must be {tp.__name__}, got {value!r}")
            kwargs[name] = tp(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_config(path: str | Path | None = None, cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load `path` (YAML) strictly into `cls`; no path gives the defaults."""
    if path is None:
        return cls()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return from_dict(cls, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# What `animate` takes of its settings, checked before any work (the CLI checks them before it loads
# the model; the pipeline again, for callers from Python).
SEED_MAX = 2 ** 32 - 1
MAX_SIZE_FACTOR = 4  # a model serves working sizes up to this many times the size it was trained at


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed must be an integer from 0 to {SEED_MAX}, got {seed}")


def check_size(cfg: Config, size: int) -> None:
    """A working size the model serves: from 32 pixels to MAX_SIZE_FACTOR x its trained size (its
    attention grows with the square of the token count; a bigger video comes from --out-size)."""
    largest = MAX_SIZE_FACTOR * cfg.model.size
    if not 32 <= size <= largest:
        raise InputError(f"--size must lie between 32 and {largest} pixels for this model (trained at "
                         f"{cfg.model.size}), got {size}; for a bigger video pass --out-size instead")


def guidance_warning(cfg: Config, guidance: float) -> str | None:
    """Guidance needs a model that learned the cue-free case (train.cue_dropout > 0)."""
    if guidance > 1.0 and cfg.train.cue_dropout <= 0.0:
        return (f"warning: --guidance {guidance:g} on a model trained without cue dropout (train.cue_dropout 0): "
                f"it never learned the cue-free prediction guidance pushes away from; expect no gain")
    return None
