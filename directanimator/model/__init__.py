"""The CueFusion DiT (paper 3.1): codecs, the cue stream, the transformer, text conditioning."""

from __future__ import annotations

import dataclasses

import torch

from ..config import ModelConfig
from .codec import CogVideoXCodec, LatentCodec, PixelShuffleCodec, WanVAECodec, mask_to_latent
from .cue_fusion import CueFusion, downsample_mask
from .text import CachedPrompt, NullPrompt, T5PromptEncoder, UMT5PromptEncoder
from .transformer import (INJECTIONS, REFERENCE_LAYOUTS, CueFusionOutput, CueFusionTransformer3D, front_padding,
                          i2v_hidden_states, pad_front, reference_layout_of)

__all__ = [
    "INJECTIONS", "REFERENCE_LAYOUTS", "CogVideoXCodec", "CueFusion", "CueFusionOutput", "CueFusionTransformer3D", "LatentCodec",
    "CachedPrompt", "NullPrompt", "PixelShuffleCodec", "T5PromptEncoder", "build_codec", "build_text_encoder",
    "build_transformer", "downsample_mask", "is_wan", "spatial_patch", "front_padding", "i2v_hidden_states", "reference_layout_of", "mask_to_latent", "pad_front", "transformer_kwargs",
]


def build_codec(cfg: ModelConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LatentCodec:
    c = cfg.codec
    if c.kind == "pixel_shuffle":
        return PixelShuffleCodec(c.spatial_factor, 4, c.scale, c.keep_spatial, c.keep_temporal, c.channel_scale)
    path = c.path or cfg.pretrained
    if path is None:
        from ..errors import InputError

        folder = "Wan2.x folder" if c.kind == "wan" else "CogVideoX1.5-5B-I2V folder"
        raise InputError(f"model.codec.kind is {c.kind} but neither model.codec.path nor model.pretrained is set: "
                         f"give the local {folder} (it holds vae/)")
    if c.kind == "wan":
        from .codec import WanI2VCodec
        from .wan_sampling import folder_form

        if cfg.pretrained and folder_form(cfg.pretrained) == "i2v":  # with the reference's condition and CLIP tokens
            return WanI2VCodec(path, cfg.frames, dtype=dtype, device=device, image_path=cfg.pretrained)
        return WanVAECodec(path, dtype=dtype, device=device)
    return CogVideoXCodec(path, dtype=dtype, device=device, slicing=c.slicing, tiling=c.tiling)


def transformer_kwargs(cfg: ModelConfig, latent_channels: int) -> dict:
    """Constructor arguments of CueFusionTransformer3D for a config without a pretrained folder."""
    kw = dataclasses.asdict(cfg.transformer)
    kw.update(
        in_channels=2 * latent_channels,  # noisy latents + reference-image latents (I2V)
        out_channels=latent_channels,
        cue_latent_channels=latent_channels,
        injection=cfg.injection,
        use_face_cue=cfg.use_face_cue,
        use_location_cue=cfg.use_location_cue,
        reference_layout=cfg.reference_layout,
        reference_residual=cfg.reference_residual,
    )
    return kw


def is_wan(transformer) -> bool:
    """Whether a transformer is the Wan backbone's (model/wan.py) rather than CogVideoX's."""
    return type(transformer).__name__ == "WanCueFusionTransformer3D"


def spatial_patch(transformer) -> int:
    """The transformer's spatial patch side in latent cells (CogVideoX: `patch_size`; Wan: the last
    of its (t, h, w) `patch_size`)."""
    p = transformer.config.patch_size
    return int(p[-1]) if isinstance(p, (list, tuple)) else int(p)


def build_transformer(cfg: ModelConfig, latent_channels: int):
    """Random-initialised tiny model, or the pretrained CogVideoX or Wan with cue modules added."""
    if cfg.backbone == "wan":
        from .wan import WanCueFusionTransformer3D

        if not cfg.pretrained:
            from ..errors import InputError

            raise InputError("model.backbone wan needs model.pretrained: the local Wan2.x folder in the diffusers "
                             "layout (transformer/, vae/, scheduler/, text_encoder/, tokenizer/)")

        model = WanCueFusionTransformer3D.from_wan(cfg.pretrained, injection=cfg.injection,
                                                   use_face_cue=cfg.use_face_cue,
                                                   use_location_cue=cfg.use_location_cue)
    elif cfg.pretrained:
        model = CueFusionTransformer3D.from_cogvideox(
            cfg.pretrained, injection=cfg.injection, use_face_cue=cfg.use_face_cue,
            use_location_cue=cfg.use_location_cue, reference_layout=cfg.reference_layout,
            reference_residual=cfg.reference_residual,
        )
    else:
        model = CueFusionTransformer3D(**transformer_kwargs(cfg, latent_channels))
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model


def build_text_encoder(cfg: ModelConfig, transformer: CueFusionTransformer3D, device: str | torch.device = "cpu"):
    """T5 when `model.text.encoder_path` is set; for a pretrained model without it, T5 of the prompt
    from the model folder's own T5, cached on disk (what the pretrained model saw for an empty
    prompt is T5(""), not zeros); the null prompt (zeros) for models from scratch. Lengths follow
    the transformer. A Wan backbone's encoder is UMT5 (512 tokens, its text_encoder/)."""
    if is_wan(transformer):
        if cfg.text.encoder_path:
            return UMT5PromptEncoder(cfg.text.encoder_path, device=device)
        return CachedPrompt(cfg.pretrained, UMT5PromptEncoder.default_length, device=device,
                            encoder=UMT5PromptEncoder)
    length, dim = transformer.config.max_text_seq_length, transformer.config.text_embed_dim
    if cfg.text.encoder_path:
        return T5PromptEncoder(cfg.text.encoder_path, length, device=device)
    if cfg.pretrained:
        return CachedPrompt(cfg.pretrained, length, device=device)
    return NullPrompt(length, dim)
