"""A tiny CogVideoX1.5-5B-I2V folder: the real checkpoint's exact diffusers layout and structure,
random weights, sizes small enough for a CPU test.

    model_index.json                       CogVideoXImageToVideoPipeline and its components
    scheduler/scheduler_config.json        CogVideoXDDIMScheduler, the real checkpoint's settings
    transformer/config.json                CogVideoX 1.5 I2V: patch_size_t 2, RoPE, ofs embedding, no
    transformer/diffusion_pytorch_model-0000K-of-0000N.safetensors (+ .index.json)   bf16, sharded
    vae/config.json, diffusion_pytorch_model.safetensors   8x spatial, 4x temporal, invert_scale_latents
    text_encoder/config.json, model-0000K-of-0000N.safetensors (+ .index.json)       T5, bf16, sharded
    tokenizer/spiece.model, tokenizer_config.json, special_tokens_map.json           SentencePiece

diffusers' own `CogVideoXImageToVideoPipeline` loads the transformer, VAE and scheduler of such a
folder, and this project loads all of it (`model.pretrained`, `model.text.encoder_path`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

LATENT_CHANNELS = 4
TEXT_DIM = 16
TEXT_LENGTH = 226  # the real checkpoint's max_text_seq_length


def transformer_config() -> dict:
    """CogVideoX1.5-5B-I2V's transformer/config.json with the sizes shrunk (42 -> 2 layers, 48 x 64 ->
    2 x 16 heads, 16 -> 4 latent channels, 4096 -> 16 text width); every switch as in the real one."""
    return dict(
        activation_fn="gelu-approximate", attention_bias=True, attention_head_dim=16, dropout=0.0,
        flip_sin_to_cos=True, freq_shift=0, in_channels=2 * LATENT_CHANNELS, max_text_seq_length=TEXT_LENGTH,
        norm_elementwise_affine=True, norm_eps=1e-5, num_attention_heads=2, num_layers=2, ofs_embed_dim=32,
        out_channels=LATENT_CHANNELS, patch_bias=False, patch_size=2, patch_size_t=2, sample_frames=81,
        sample_height=300, sample_width=300, spatial_interpolation_scale=1.875, temporal_compression_ratio=4,
        temporal_interpolation_scale=1.0, text_embed_dim=TEXT_DIM, time_embed_dim=32, timestep_activation_fn="silu",
        use_learned_positional_embeddings=False, use_rotary_positional_embeddings=True,
    )


def vae_config() -> dict:
    """CogVideoX1.5's VAE (four blocks: 8x spatial; 4x temporal; scaling 0.7 with invert_scale_latents),
    32 channels per block instead of 128-512."""
    return dict(
        block_out_channels=(32, 32, 32, 32), down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, latent_channels=LATENT_CHANNELS, layers_per_block=1,
        norm_num_groups=32, temporal_compression_ratio=4, scaling_factor=0.7, invert_scale_latents=True,
    )


def write_spiece_model(tok: Path) -> Path:
    """`tok`/spiece.model: a 40-piece SentencePiece model (pad 0, eos 1, unk 2, as T5's and UMT5's)
    trained on a few prompt-like lines; returns `tok`."""
    import sentencepiece as spm

    tok.mkdir(parents=True, exist_ok=True)
    corpus = tok / "corpus.txt"
    corpus.write_text("\n".join(f"a person {w} in a {c} room, dancing slowly number {k}" for k in range(60)
                                for w, c in (("walks", "red"), ("jumps", "blue"), ("waves", "green"))))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tok / "spiece"), vocab_size=40, pad_id=0,
                                   eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    corpus.unlink()
    (tok / "spiece.vocab").unlink()
    return tok


def make_tiny_cogvideox15_i2v(root: Path, seed: int = 0) -> Path:
    """Write the folder at `root` (created) and return it."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from directanimator.model.sampling import COGVIDEOX_SCHEDULER

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(**transformer_config())
    with torch.no_grad():  # diffusers zero-initialises some layers; a checkpoint has none at zero
        for p in transformer.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    transformer.to(torch.bfloat16).save_pretrained(root / "transformer", safe_serialization=True,
                                                   max_shard_size="40KB")
    AutoencoderKLCogVideoX(**vae_config()).save_pretrained(root / "vae", safe_serialization=True)
    CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER).save_pretrained(root / "scheduler")

    tok = write_spiece_model(root / "tokenizer")
    (tok / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "model_max_length": TEXT_LENGTH, "eos_token": "</s>", "pad_token": "<pad>",
         "unk_token": "<unk>", "extra_ids": 0, "legacy": True}, indent=2))
    (tok / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2))
    T5EncoderModel(T5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).to(
        torch.bfloat16).save_pretrained(root / "text_encoder", safe_serialization=True, max_shard_size="2KB")

    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "CogVideoXImageToVideoPipeline", "_diffusers_version": "0.32.0.dev0",
        "scheduler": ["diffusers", "CogVideoXDDIMScheduler"], "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"]}, indent=2))
    return root
