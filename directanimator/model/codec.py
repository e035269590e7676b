"""Latent codecs: pixels <-> latents, behind one protocol.

Both codecs map a video of 1 + 4k frames to 1 + k latent frames (the CogVideoX VAE's causal
temporal grouping: frame 0 alone, then groups of 4), so one data path serves the real VAE and the
weights-free codec of the tiny CPU configs.

Video tensors are (B, T, 3, H, W) in [-1, 1]; latents are (B, t, C, h, w), the layout the
transformer takes. Masks go to the latent grid with `LatentCodec.downsample_mask`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import InputError
from ..windows import latent_frames
from .cue_fusion import downsample_mask
from .weights import find_component


@runtime_checkable
class LatentCodec(Protocol):
    name: str
    latent_channels: int
    spatial_factor: int
    temporal_factor: int

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def encode_reference(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The reference image (B, 1, 3, H, W) as the image-to-video input expects it."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


def posterior_latents(dist, mode: bool, generator: torch.Generator | None) -> torch.Tensor:
    """A VAE posterior's mode, or a draw from it with `generator` (a CPU one seeded 0 by default), never
    from the global RNG: the same seed must give the same video."""
    if mode:
        return dist.mode()
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    noise = torch.randn(dist.mean.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)


def mask_to_latent(mask: torch.Tensor, codec: LatentCodec) -> torch.Tensor:
    """(B, T, 1, H, W) -> (B, t, 1, H/s, W/s), grouped in time as the codec groups frames."""
    b, t, _, h, w = mask.shape
    return downsample_mask(
        mask, latent_frames(t, codec.temporal_factor), h // codec.spatial_factor, w // codec.spatial_factor,
        codec.temporal_factor,
    )


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II basis, rows = frequencies (lowest first)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    m = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


class PixelShuffleCodec:
    """A weights-free codec for tiny CPU configs. Each latent cell holds the s x s pixels of its
    patch for the 4 frames of its temporal group (a pixel shuffle), expressed in a fixed orthonormal
    3D DCT basis and truncated to the `keep_spatial` x `keep_spatial` x `keep_temporal` lowest
    frequencies: channels = 3 * keep_spatial^2 * keep_temporal.

    With nothing truncated (the default) it is an exact, invertible pixel shuffle (rotated by an
    orthonormal basis). Truncation makes it compact like a VAE latent, which a tiny transformer
    needs: its output per token cannot exceed its width, and v-prediction must reproduce the noise
    in every latent channel. Latent frame 0 holds frame 0 four times (decoding averages the
    copies), like the causal padding of the CogVideoX VAE. Latents are multiplied by `scale`."""

    name = "pixel_shuffle"

    def __init__(self, spatial_factor: int = 4, temporal_factor: int = 4, scale: float = 1.0,
                 keep_spatial: int | None = None, keep_temporal: int | None = None,
                 channel_scale: list[float] | tuple[float, ...] | None = None):
        self.spatial_factor = spatial_factor
        self.temporal_factor = temporal_factor
        self.scale = scale
        self.keep_spatial = keep_spatial or spatial_factor
        self.keep_temporal = keep_temporal or temporal_factor
        if not (1 <= self.keep_spatial <= spatial_factor and 1 <= self.keep_temporal <= temporal_factor):
            raise ValueError("keep_spatial / keep_temporal must lie between 1 and the factor")
        self._ds = dct_matrix(spatial_factor)[: self.keep_spatial]
        self._dt = dct_matrix(temporal_factor)[: self.keep_temporal]
        self.latent_channels = 3 * self.keep_spatial**2 * self.keep_temporal
        if channel_scale is not None and len(channel_scale) != self.latent_channels:
            raise ValueError(f"codec.channel_scale has {len(channel_scale)} factors; this codec has "
                             f"{self.latent_channels} channels")
        if channel_scale is not None and not all(float(v) > 0 for v in channel_scale):
            raise ValueError("codec.channel_scale factors must be positive")
        factors = torch.ones(self.latent_channels) if channel_scale is None else torch.tensor(
            [float(v) for v in channel_scale])
        self._scale = (factors * scale).view(-1, 1, 1)  # (C, 1, 1)

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, t, c, h, w = video.shape
        s, k = self.spatial_factor, self.temporal_factor
        if h % s or w % s:
            raise ValueError(f"frame size {h}x{w} is not a multiple of the codec's factor {s}")
        n = latent_frames(t, k)
        groups = torch.cat([video[:, :1].expand(-1, k, -1, -1, -1), video[:, 1:]], dim=1)
        groups = groups.reshape(b, n, k, c, h // s, s, w // s, s)
        ds, dt = self._ds.to(video), self._dt.to(video)
        # coefficients (b, n, kt, c, ks, ks, h', w') -> channels (kt, c, ks, ks)
        coef = torch.einsum("bnkcyixj,tk,ui,vj->bntcuvyx", groups, dt, ds, ds)
        return coef.reshape(b, n, self.latent_channels, h // s, w // s) * self._scale.to(video)

    def encode_reference(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encode(image, generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, n, ch, hh, ww = latents.shape
        s, k = self.spatial_factor, self.temporal_factor
        coef = (latents / self._scale.to(latents)).reshape(b, n, self.keep_temporal, 3, self.keep_spatial, self.keep_spatial, hh, ww)
        ds, dt = self._ds.to(latents), self._dt.to(latents)
        x = torch.einsum("bntcuvyx,tk,ui,vj->bnkcyixj", coef, dt, ds, ds).reshape(b, n, k, 3, hh * s, ww * s)
        first = x[:, :1].mean(dim=2)
        rest = x[:, 1:].reshape(b, (n - 1) * k, 3, hh * s, ww * s)
        return torch.cat([first, rest], dim=1)


class CogVideoXCodec:
    """diffusers' AutoencoderKLCogVideoX from a local folder (the model folder with `vae/`, or the
    vae folder itself), frozen, with its scaling factor; slicing and tiling switchable for memory."""

    name = "cogvideox"
    spatial_factor = 8
    temporal_factor = 4

    def __init__(self, path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 slicing: bool = True, tiling: bool = False, sample: bool = True):
        from diffusers import AutoencoderKLCogVideoX

        folder = _find_vae_folder(Path(path))
        try:
            self.vae = AutoencoderKLCogVideoX.from_pretrained(str(folder), torch_dtype=dtype).to(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot load the CogVideoX VAE from {folder}: {str(exc).splitlines()[0]}") from None
        self.vae.requires_grad_(False).eval()
        if slicing:
            self.vae.enable_slicing()
        if tiling:
            self.vae.enable_tiling()
        self.sample = sample
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.invert_scale_latents = bool(getattr(self.vae.config, "invert_scale_latents", False))
        self.latent_channels = int(self.vae.config.latent_channels)
        self.spatial_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        # as diffusers' CogVideoX encoder: the first log2(ratio) down blocks halve time, the last
        # block never downsamples
        levels = len(self.vae.config.block_out_channels) - 1
        self.temporal_factor = 2 ** min(levels, int(math.log2(self.vae.config.temporal_compression_ratio)))

    @torch.no_grad()
    def _latents(self, video: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        latent_frames(video.shape[1], self.temporal_factor)
        x = video.permute(0, 2, 1, 3, 4).to(self.vae.device, self.vae.dtype)  # (B, 3, T, H, W)
        z = posterior_latents(self.vae.encode(x).latent_dist, not self.sample, generator)
        return z.permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._latents(video, generator) * self.scaling_factor

    @torch.no_grad()
    def encode_reference(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """As diffusers' CogVideoX I2V pipeline (`prepare_latents`): the image latent is multiplied by
        the scaling factor, or divided by it when the VAE's config says `invert_scale_latents`
        (CogVideoX1.5: "the CogVideoX team forgot to multiply the scaling factor during training")."""
        z = self._latents(image, generator)
        return z / self.scaling_factor if self.invert_scale_latents else z * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.permute(0, 2, 1, 3, 4).to(self.vae.device, self.vae.dtype) / self.scaling_factor
        return self.vae.decode(z).sample.permute(0, 2, 1, 3, 4).float().clamp(-1, 1)


def _find_vae_folder(path: Path) -> Path:
    return find_component(path, "vae", "CogVideoX VAE", "diffusion_pytorch_model.safetensors")


class WanVAECodec:
    """Wan's VAE (AutoencoderKLWan: Wan2.1's 8x or Wan2.2's 16x spatial compression, 4x in time, frame
    0 alone as CogVideoX's) from a local folder. Latents are normalised per channel with the VAE's
    `latents_mean` / `latents_std`, as diffusers' Wan pipelines normalise them; the reference and the
    image-to-video condition use the posterior's mode (diffusers' `sample_mode="argmax"`), training
    latents a draw from it (`sample`)."""

    name = "wan"

    def __init__(self, path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 sample: bool = True):
        from diffusers import AutoencoderKLWan

        folder = find_component(Path(path), "vae", "Wan VAE", "diffusion_pytorch_model.safetensors")
        try:
            self.vae = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype).to(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot load the Wan VAE from {folder}: {str(exc).splitlines()[0]}") from None
        self.vae.requires_grad_(False).eval()
        cfg = self.vae.config
        self.sample = sample
        self.latent_channels = int(cfg.z_dim)
        self.spatial_factor = int(cfg.scale_factor_spatial)
        self.temporal_factor = int(cfg.scale_factor_temporal)
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        # as diffusers writes it: times the reciprocal (the same float32 rounding as its pipelines)
        self.inv_std = 1.0 / torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @torch.no_grad()
    def _encode(self, x: torch.Tensor, generator: torch.Generator | None, mode: bool) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, t, h, w), float32."""
        z = posterior_latents(self.vae.encode(x.to(self.vae.device, self.vae.dtype)).latent_dist, mode, generator)
        return (z.float() - self.mean.to(z.device)) * self.inv_std.to(z.device)

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, t, C, h, w)."""
        latent_frames(video.shape[1], self.temporal_factor)
        return self._encode(video.permute(0, 2, 1, 3, 4), generator, not self.sample).permute(0, 2, 1, 3, 4)

    def encode_reference(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The reference (B, 1, 3, H, W) alone: (B, 1, C, h, w), Wan2.2 TI2V's latent frame 0."""
        return self._encode(image.permute(0, 2, 1, 3, 4), None, True).permute(0, 2, 1, 3, 4)

    def encode_condition(self, image: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Wan2.1 I2V's condition: the video of the reference (B, 1, 3, H, W) followed by black frames
        (zeros), `num_frames` in all, encoded: (B, t, C, h, w)."""
        latent_frames(num_frames, self.temporal_factor)
        x = image.permute(0, 2, 1, 3, 4)
        x = torch.cat([x, x.new_zeros(x.shape[0], x.shape[1], num_frames - 1, *x.shape[3:])], dim=2)
        return self._encode(x, None, True).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, t, C, h, w) -> (B, T, 3, H, W) in [-1, 1]."""
        z = latents.permute(0, 2, 1, 3, 4).float()
        z = z / self.inv_std.to(z.device) + self.mean.to(z.device)
        return self.vae.decode(z.to(self.vae.device, self.vae.dtype)).sample.permute(0, 2, 1, 3, 4).float().clamp(-1, 1)



class WanI2VCodec(WanVAECodec):
    """Wan2.1-I2V's VAE, with what its image-to-video form takes of the reference besides the latents
    (`reference_inputs`): the reference followed by black frames over a window of `num_frames`,
    encoded (the channel condition), and the reference's CLIP image tokens (the folder's
    `image_encoder/`). The caches hold both per window; the pipeline computes them once per video."""

    def __init__(self, path: str | Path, num_frames: int, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", sample: bool = True, image_path: str | Path | None = None):
        from .wan_sampling import WanImageEncoder

        super().__init__(path, dtype=dtype, device=device, sample=sample)
        self.num_frames = num_frames
        self.image_encoder = WanImageEncoder(image_path or path, dtype=dtype, device=device)

    @torch.no_grad()
    def reference_inputs(self, image) -> dict[str, torch.Tensor]:
        """`image`: the reference, RGB uint8 (H, W, 3) -> {"condition_latents": (1, t, C, h, w),
        "image_embeds": (1, L, D)}, float32."""
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div(127.5).sub(1.0).permute(2, 0, 1)[None, None]
        return {"condition_latents": self.encode_condition(x, self.num_frames),
                "image_embeds": self.image_encoder(image).float()}
