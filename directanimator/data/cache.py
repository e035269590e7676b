"""Training caches: Driving Cue Triplets and codec latents, computed once per clip and config.

    DATASET/cache/<config key>/
      clips/<clip_id>.safetensors      same-ID windows of a clip (see ENTRY_KEYS)
      pseudo/<pseudo_id>.safetensors   pseudo pose/face cue latents for a source clip's windows
      failures-<rank>.jsonl            clips that failed, with the error (skipped, never fatal)
      config.yaml                      the resolved config the key stands for

The key hashes everything that changes the cached numbers (cue settings, frames, size, codec), so a
changed config never reads a stale cache; each file also records the fingerprint (SHA-1) of its
source files and is rebuilt when they change. Files are written to a temporary name and renamed.

A clip of T frames gives the windows [s, s + F) for s = 0, stride, ... (F = model.frames). Each
window holds (t latent frames of C x h x w):
  latents (t, C, h, w)              the target video
  reference_latent (1, C, h, w)     the reference frame (one frame of the clip, fixed per clip)
  pose_latents, face_latents        the Pose Cue (gray, as RGB) and Face Cue through the codec
  body_mask, face_mask (t, 1, h, w) the Location Cue on the latent grid
and, for a Wan2.1-I2V model (model/wan_sampling.py REFERENCE_KEYS), what its form takes of the
reference: condition_latents (t, C, h, w) and image_embeds (L, D).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import Config, dump_config, to_dict
from ..cues.extract import DrivingCues, extract_cues_in_memory
from ..cues.face import GivenFaceBoxes
from ..cues.segment import GivenMasks
from ..errors import InputError
from ..model.codec import LatentCodec
from ..model.wan_sampling import REFERENCE_KEYS
from ..video import Letterbox, iter_frames, probe_video
from ..windows import cue_latents, video_tensor, windows_inside
from .format import ClipRecord, clip_dir

CACHE_VERSION = 1
ENTRY_KEYS = ("latents", "reference_latent", "pose_latents", "face_latents", "body_mask", "face_mask")
PSEUDO_KEYS = ("pose_latents", "face_latents")


CAPTION_FILE = "caption.txt"


def read_caption(folder: Path) -> str | None:
    """A clip's caption (`directanimator caption`), or None."""
    path = Path(folder) / CAPTION_FILE
    return path.read_text().strip() if path.is_file() else None


def text_encoder_id(cfg: Config) -> str:
    """Which T5 a cached caption embedding comes from (a change rebuilds the entries that have one)."""
    return str(cfg.model.text.encoder_path or cfg.model.pretrained or "null prompt")


def cache_key(cfg: Config) -> str:
    relevant = {"version": CACHE_VERSION, "cues": to_dict(cfg.cues), "frames": cfg.model.frames,
                "size": cfg.model.size, "codec": to_dict(cfg.model.codec),
                "stride": cfg.data.window_stride, "float16": cfg.data.cache_float16,
                "pretrained": cfg.model.pretrained if cfg.model.codec.kind == "cogvideox" else None}
    if cfg.model.codec.kind == "cogvideox":
        # 2: the reference latent scaled as diffusers' I2V pipeline (invert_scale_latents), the VAE
        # posterior drawn from a per-clip seed (earlier caches of the VAE codec are rebuilt)
        relevant["cogvideox_rev"] = 2
        if cfg.data.codec_dtype != "float32":  # (absent for float32: earlier caches keep their key)
            relevant["codec_dtype"] = cfg.data.codec_dtype
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def cache_root(dataset: str | Path, cfg: Config) -> Path:
    return Path(dataset) / "cache" / cache_key(cfg)


def fingerprint(folder: Path) -> str:
    h = hashlib.sha1()
    for name in ("video.mp4", "annotations.safetensors", CAPTION_FILE):
        f = folder / name
        if f.is_file():
            h.update(name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


@dataclass
class ClipFrames:
    """A clip at the working size: frames (T, S, S, 3) uint8; ground truth when annotated."""

    frames: np.ndarray
    fps: float
    masks: np.ndarray | None = None       # (T, S, S) float32 0/1
    face_boxes: np.ndarray | None = None  # (T, 4) in working pixels, NaN = none
    keypoints: np.ndarray | None = None   # (T, 17, 3) working pixels
    face_landmarks: np.ndarray | None = None  # (T, 68, 2)
    # a reference photo of the clip's person stored with the clip (the puppet world renders one in
    # another pose, as a test triple's reference is), with its mask and face box; None: the reference
    # is one of the clip's own frames (`reference_index`)
    reference: np.ndarray | None = None       # (S, S, 3) uint8
    reference_mask: np.ndarray | None = None  # (S, S) float32 0/1
    reference_face_box: np.ndarray | None = None  # (4,)
    video: Path | None = None  # the clip's own file, at its own resolution


def load_clip_frames(folder: Path, size: int) -> ClipFrames:
    video = folder / "video.mp4"
    if not video.is_file():
        raise InputError(f"clip video missing: {video}")
    info = probe_video(video)
    lb = Letterbox.fit(info.width, info.height, size)
    frames = np.stack([lb.apply(f) for f in iter_frames(video)])
    out = ClipFrames(frames, info.fps, video=video)
    ann_path = folder / "annotations.safetensors"
    if ann_path.is_file():
        from safetensors.numpy import load_file

        ann = load_file(str(ann_path))
        n = len(frames)
        if "masks" in ann:
            out.masks = np.stack([lb.apply(m.astype(np.float32)) for m in ann["masks"][:n]])
        shift = np.array([lb.pad_x, lb.pad_y], np.float32)
        if "face_boxes" in ann:
            out.face_boxes = ann["face_boxes"][:n] * lb.scale + np.tile(shift, 2)
        if "keypoints" in ann:
            kp = ann["keypoints"][:n].copy()
            kp[..., :2] = kp[..., :2] * lb.scale + shift
            out.keypoints = kp
        if "face_landmarks" in ann:
            out.face_landmarks = ann["face_landmarks"][:n] * lb.scale + shift
        if "reference_frame" in ann:
            out.reference = lb.apply(ann["reference_frame"])
            if "reference_mask" in ann:
                out.reference_mask = lb.apply(ann["reference_mask"].astype(np.float32))
            if "reference_face_box" in ann:
                out.reference_face_box = ann["reference_face_box"] * lb.scale + np.tile(shift, 2)
    return out


def reference_index(clip_id: str, num_frames: int, seed: int = 0) -> int:
    """The clip's reference frame: fixed per clip and seed, anywhere in the clip."""
    return int(np.random.default_rng([zlib.crc32(clip_id.encode()), seed]).integers(num_frames))


def compute_cues(clip: ClipFrames, ref_index: int | None, cfg: Config) -> DrivingCues:
    """The Driving Cue Triplet of a clip with one of its frames as reference (`ref_index`), or with
    the reference photo stored with the clip (None); ground-truth masks and face boxes are used when
    the clip has them, the embedded models otherwise."""
    cues_cfg = cfg.cues
    if cues_cfg.size != cfg.model.size:
        from dataclasses import replace

        cues_cfg = replace(cues_cfg, size=cfg.model.size)
    kwargs = {}
    if ref_index is None and clip.reference is None:
        raise ValueError("compute_cues: no reference frame index and no stored reference photo")
    ref_image = clip.frames[ref_index] if ref_index is not None else clip.reference
    frames, name = list(clip.frames), "reference image"
    if clip.masks is None and clip.video is not None:
        # no ground truth: the detectors see the clip at its own resolution, as `cues` sees a video (a
        # full-body person shrunk to the working size first is too small for them), and the cues come
        # out at the working size, on the same letterbox as `frames`
        frames = lambda: iter_frames(clip.video)  # noqa: E731 - a FrameSource
        if ref_index is not None:
            from itertools import islice

            ref_image = next(islice(iter_frames(clip.video), ref_index, None))
            name = f"reference frame {ref_index} of clip {clip.video.parent.name}"
    ref_mask = (clip.masks[ref_index] if clip.masks is not None else None) if ref_index is not None \
        else clip.reference_mask
    ref_box = (clip.face_boxes[ref_index] if clip.face_boxes is not None else None) if ref_index is not None \
        else clip.reference_face_box
    if clip.masks is not None:
        kwargs["segmenter"] = GivenMasks(list(clip.masks))
        if ref_mask is not None:
            kwargs["reference_mask"] = ref_mask
    if clip.face_boxes is not None:
        kwargs["face_detector"] = GivenFaceBoxes(clip.face_boxes, reference_box=ref_box)
    if cues_cfg.pose.mode == "skeleton" and clip.keypoints is not None:
        from ..cues.skeleton import GivenKeypoints

        kwargs["keypoints"] = GivenKeypoints(clip.keypoints, errors=cues_cfg.pose.skeleton_errors)
    return extract_cues_in_memory(ref_image, frames, cues_cfg, fps=clip.fps, reference_name=name, **kwargs)


def misalign(pose: np.ndarray, body: np.ndarray | None, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Appendix A.2's misalignment augmentation: the person in the pose cue scaled about its mean
    centre and shifted (fractions of the size); the frames keep their size."""
    size = pose.shape[1]
    if body is not None and body.any():
        ys, xs = np.nonzero(body.max(axis=0) > 0.5)
        cx, cy = float(xs.mean()), float(ys.mean())
    else:
        cx = cy = size / 2
    m = np.array([[scale, 0, (1 - scale) * cx + shift[0] * size], [0, scale, (1 - scale) * cy + shift[1] * size]],
                 np.float32)
    return np.stack([cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0) for f in pose])


@torch.no_grad()
def encode_windows(codec: LatentCodec, frames: np.ndarray | None, cues: DrivingCues, starts: list[int], length: int,
                   reference: np.ndarray | None, dtype: torch.dtype = torch.float32,
                   pose: np.ndarray | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Stack the per-window tensors of ENTRY_KEYS (only the cue latents when `frames` is None). A
    sampling codec (the VAE posterior) draws from a generator seeded with `seed` (e.g. per clip)."""
    gen = torch.Generator().manual_seed(seed)
    pose = cues.pose_cue if pose is None else pose
    out: dict[str, list[torch.Tensor]] = {}

    def add(key: str, value: torch.Tensor) -> None:
        out.setdefault(key, []).append(value[0].to("cpu", dtype).contiguous())  # the VAE may be on a GPU

    for s in starts:
        sl = slice(s, s + length)
        if frames is not None:
            add("latents", codec.encode(video_tensor(frames[sl]), gen))
        masks = (cues.body_mask[sl], cues.face_mask[sl]) if frames is not None else (None, None)
        for key, value in cue_latents(codec, pose[sl], cues.face_cue[sl], *masks, generator=gen).items():
            add(key, value)
    result = {k: torch.stack(v) for k, v in out.items()}
    if frames is not None and reference is not None:
        ref = codec.encode_reference(video_tensor(reference[None]), gen)[0].to("cpu", dtype)  # (1, C, h, w)
        result["reference_latent"] = ref[None].expand(len(starts), -1, -1, -1, -1).contiguous()
        if hasattr(codec, "reference_inputs"):  # Wan2.1-I2V: the reference's channel condition and CLIP tokens
            for key, value in codec.reference_inputs(reference).items():
                result[key] = value.to("cpu", dtype).expand(len(starts), *value.shape[1:]).contiguous()
    return result


def write_entry(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    from ..storage import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)}))


def read_meta(path: Path) -> dict | None:
    try:
        with safe_open(str(path), "pt") as f:
            return json.loads((f.metadata() or {}).get("meta", "null"))
    except Exception:  # noqa: BLE001 - a truncated or foreign file is simply not a valid entry
        return None


def read_window(path: Path, window: int, keys: tuple[str, ...],
                per_clip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Window `window` of each of `keys`, and the one entry of each `per_clip` key (a clip's caption
    embedding), from one open of the file."""
    with safe_open(str(path), "pt") as f:
        return {**{k: f.get_slice(k)[window].float() for k in keys},
                **{k: f.get_slice(k)[0].float() for k in per_clip}}


def build_clip_entry(dataset: Path, record: ClipRecord, cfg: Config, codec: LatentCodec, out: Path,
                     text_encoder=None) -> dict:
    """Cues + latents of one same-ID clip, and its caption's text embedding (`prompt_embeds`, (1, L, D))
    when it has a caption and a `text_encoder` is given; returns the entry's metadata."""
    folder = clip_dir(dataset, record.clip_id)
    fp = fingerprint(folder)
    clip = load_clip_frames(folder, cfg.model.size)
    n = len(clip.frames)
    starts = windows_inside(n, cfg.model.frames, cfg.data.window_stride)
    if not starts:
        raise InputError(f"clip {record.clip_id} has {n} frames, fewer than model.frames = {cfg.model.frames}")
    # the stored reference photo when the clip has one (meta: reference_index -1), else a frame of its own
    ref = reference_index(record.clip_id, n) if clip.reference is None else -1
    cues = compute_cues(clip, None if ref < 0 else ref, cfg)
    dtype = torch.float16 if cfg.data.cache_float16 else torch.float32
    tensors = encode_windows(codec, clip.frames, cues, starts, cfg.model.frames, cues.reference, dtype,
                             seed=zlib.crc32(record.clip_id.encode()))
    caption = read_caption(folder) if cfg.model.text.use_captions else None
    if caption is not None and text_encoder is not None:
        tensors["prompt_embeds"] = text_encoder([caption])[0:1].to("cpu", dtype).contiguous()
    meta = {"clip_id": record.clip_id, "fingerprint": fp, "key": cache_key(cfg), "starts": starts, "caption": caption,
            "text_encoder": text_encoder_id(cfg) if "prompt_embeds" in tensors else None,
            "reference_index": ref, "num_frames": n, "shape": list(tensors["latents"].shape[1:]),
            "reference_keys": [k for k in REFERENCE_KEYS if k in tensors],
            "pose_valid": float(cues.pose_valid.mean()), "face_valid": float(cues.face_valid.mean())}
    write_entry(out, tensors, meta)
    return meta


def build_pseudo_entry(dataset: Path, pseudo_root: Path, pseudo: dict, source_meta: dict, cfg: Config,
                       codec: LatentCodec, out: Path) -> dict:
    """Pseudo pose/face cue latents over the source clip's windows, with the misalignment
    augmentation applied to the pose cue (the Location Cue stays the source's)."""
    folder = clip_dir(pseudo_root, pseudo["pseudo_id"])
    fp = fingerprint(folder)
    clip = load_clip_frames(folder, cfg.model.size)
    starts = source_meta["starts"]
    if len(clip.frames) < starts[-1] + cfg.model.frames:
        raise InputError(f"pseudo clip {pseudo['pseudo_id']} has {len(clip.frames)} frames; its source needs "
                         f"{starts[-1] + cfg.model.frames}")
    # the pseudo clip's own cues need a reference only for their alignment, which is not used (the
    # Location Cue stays the source's): the source's reference frame, or frame 0 for a stored photo
    ref = min(max(0, source_meta["reference_index"]), len(clip.frames) - 1)
    cues = compute_cues(clip, ref, cfg)
    r = np.random.default_rng([zlib.crc32(pseudo["pseudo_id"].encode()), cfg.pseudo.seed])
    scale = 1.0 + r.uniform(-1, 1) * cfg.pseudo.misalign_scale
    shift = (r.uniform(-1, 1) * cfg.pseudo.misalign_shift, r.uniform(-1, 1) * cfg.pseudo.misalign_shift)
    pose = misalign(cues.pose_cue, clip.masks, scale, shift)
    dtype = torch.float16 if cfg.data.cache_float16 else torch.float32
    tensors = encode_windows(codec, None, cues, starts, cfg.model.frames, None, dtype, pose=pose,
                             seed=zlib.crc32(pseudo["pseudo_id"].encode()))
    meta = {"pseudo_id": pseudo["pseudo_id"], "source_clip": pseudo["source_clip"], "fingerprint": fp,
            "key": cache_key(cfg), "starts": starts, "misalign": {"scale": scale, "shift": list(shift)},
            "shape": source_meta["shape"]}
    write_entry(out, tensors, meta)
    return meta


def write_cache_config(root: Path, cfg: Config) -> None:
    root.mkdir(parents=True, exist_ok=True)
    target = root / "config.yaml"
    if not target.exists():
        from ..storage import atomic_write_bytes

        atomic_write_bytes(target, dump_config(cfg).encode())
