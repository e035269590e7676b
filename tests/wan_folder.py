"""Tiny Wan transformer folders in the diffusers layout of the real checkpoints, random weights:

    Wan2.1-I2V-14B   40 layers, 40 x 128 heads, in 36 (latents 16 + first-frame mask 4 + image latent 16),
                     out 16, CLIP image tokens (image_dim 1280, added_kv_proj_dim 5120), text 4096
    Wan2.2-TI2V-5B   30 layers, 24 x 128 heads, in = out = 48 (its own high-compression VAE's channels),
                     no image tokens (the reference is latent frame 0, with a timestep of its own)

shrunk to 2 layers, 2 x 16 heads and small channel counts, every switch as in the real config.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT_DIM = 16


def wan21_i2v_config() -> dict:
    return dict(added_kv_proj_dim=32, attention_head_dim=16, cross_attn_norm=True, eps=1e-6, ffn_dim=64,
                freq_dim=256, image_dim=24, in_channels=4 + 4 + 4, num_attention_heads=2, num_layers=2,
                out_channels=4, patch_size=(1, 2, 2), qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
                text_dim=TEXT_DIM)


def wan22_ti2v_config() -> dict:
    return dict(added_kv_proj_dim=None, attention_head_dim=16, cross_attn_norm=True, eps=1e-6, ffn_dim=64,
                freq_dim=256, image_dim=None, in_channels=6, num_attention_heads=2, num_layers=2, out_channels=6,
                patch_size=(1, 2, 2), pos_embed_seq_len=None, qk_norm="rms_norm_across_heads",
                rope_max_seq_len=1024, text_dim=TEXT_DIM)


def make_tiny_wan_transformer(root: Path, config: dict, seed: int = 0, dtype=torch.bfloat16) -> Path:
    """`root`/transformer/ (config.json + diffusion_pytorch_model.safetensors, in `dtype` as the real
    checkpoints are stored) written by diffusers' own WanTransformer3DModel; returns `root`."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    model = WanTransformer3DModel(**config)
    with torch.no_grad():  # diffusers leaves some tables at zero/one: random values test more
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.to(dtype).save_pretrained(Path(root) / "transformer", safe_serialization=True)
    return Path(root)
