"""Tiny Wan transformer folders in the diffusers layout of the real checkpoints, random weights:

    Wan2.1-I2V-14B   40 layers, 40 x 128 heads, in 36 (latents 16 + first-frame mask 4 + image latent 16),
                     out 16, CLIP image tokens (image_dim 1280, added_kv_proj_dim 5120), text 4096
    Wan2.2-TI2V-5B   30 layers, 24 x 128 heads, in = out = 48 (its own high-compression VAE's channels),
                     no image tokens (the reference is latent frame 0, with a timestep of its own)

shrunk to 2 layers, 2 x 16 heads and small channel counts, every switch as in the real config.json;
with `make_tiny_wan_folder` the whole folder: `vae/` (AutoencoderKLWan: Wan2.1's 8x, or Wan2.2's
residual 16x with its 2x2 patching), `scheduler/` (UniPC with flow sigmas, the real folders' settings),
`text_encoder/` (UMT5EncoderModel, bf16), `tokenizer/` (spiece.model and tokenizer.json, as
google/umt5-xxl's), Wan2.1's `image_encoder/` and `image_processor/` (CLIP), and `model_index.json`.
"""

from __future__ import annotations

import json
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


def wan21_vae_config() -> dict:
    """Wan2.1's VAE (8x spatial, 4x temporal, z 16 -> 4), 8 base channels instead of 96."""
    return dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                temperal_downsample=[False, True, True], latents_mean=[0.1, -0.2, 0.05, 0.3],
                latents_std=[1.5, 2.0, 1.8, 2.5])


def wan22_vae_config() -> dict:
    """Wan2.2's VAE (residual, 2x2 patching: 16x spatial, 4x temporal, z 48 -> 6), small widths."""
    return dict(base_dim=8, decoder_base_dim=12, z_dim=6, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                latents_mean=[0.1, -0.2, 0.05, 0.3, 0.0, -0.1], latents_std=[1.5, 2.0, 1.8, 2.5, 1.2, 2.2])


def scheduler_config(flow_shift: float) -> dict:
    """The real folders' scheduler/scheduler_config.json (flow_shift 3.0 for Wan2.1 480P, 5.0 for TI2V)."""
    return dict(beta_end=0.02, beta_schedule="linear", beta_start=0.0001, disable_corrector=[],
                dynamic_thresholding_ratio=0.995, final_sigmas_type="zero", flow_shift=flow_shift,
                lower_order_final=True, num_train_timesteps=1000, predict_x0=True, prediction_type="flow_prediction",
                rescale_betas_zero_snr=False, sample_max_value=1.0, solver_order=2, solver_p=None, solver_type="bh2",
                steps_offset=0, thresholding=False, timestep_spacing="linspace", trained_betas=None,
                use_beta_sigmas=False, use_exponential_sigmas=False, use_flow_sigmas=True, use_karras_sigmas=False)


FORMS = {"wan2.1-i2v": (wan21_i2v_config, wan21_vae_config, 3.0),
         "wan2.2-ti2v": (wan22_ti2v_config, wan22_vae_config, 5.0)}


def make_tiny_wan_folder(root: Path, name: str, seed: int = 0) -> Path:
    """`root` with transformer/, vae/ and scheduler/ of the checkpoint `name` (a key of FORMS), and for
    Wan2.1 I2V image_encoder/ and image_processor/ (CLIP ViT-H/14 there: a 2-layer CLIP vision model
    here, its width the transformer's image_dim)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler

    transformer, vae, shift = FORMS[name]
    make_tiny_wan_transformer(root, transformer(), seed)
    torch.manual_seed(seed + 1)
    AutoencoderKLWan(**vae()).save_pretrained(Path(root) / "vae", safe_serialization=True)
    UniPCMultistepScheduler(**scheduler_config(shift)).save_pretrained(Path(root) / "scheduler")
    if transformer()["image_dim"]:
        make_tiny_clip(root, transformer()["image_dim"], seed)
    make_tiny_umt5(Path(root), seed)
    components = {"scheduler": ["diffusers", "UniPCMultistepScheduler"],
                  "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
                  "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"]}
    if transformer()["image_dim"]:
        components |= {"image_encoder": ["transformers", "CLIPVisionModel"],
                       "image_processor": ["transformers", "CLIPImageProcessor"]}
        index = {"_class_name": "WanImageToVideoPipeline", **components}
    else:  # the TI2V folder's pipeline: text or image to video, the reference as latent frame 0
        index = {"_class_name": "WanPipeline", "expand_timesteps": True, "boundary_ratio": None,
                 "transformer_2": [None, None], **components}
    (Path(root) / "model_index.json").write_text(json.dumps({**index, "_diffusers_version": "0.35.0"}, indent=2))
    return Path(root)


def make_tiny_umt5(root: Path, seed: int) -> None:
    """tokenizer/ (a 40-piece SentencePiece model, and the same as tokenizer.json, which transformers
    reads without converting) and text_encoder/ (a 1-layer UMT5 encoder, bf16, width TEXT_DIM)."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import UMT5Config, UMT5EncoderModel

    from .cogvideox_folder import write_spiece_model

    tok = write_spiece_model(root / "tokenizer")
    sp = spm.SentencePieceProcessor(model_file=str(tok / "spiece.model"))
    fast = Tokenizer(models.Unigram([(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())],
                                    unk_id=2))
    fast.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    fast.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    fast.save(str(tok / "tokenizer.json"))
    (tok / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5TokenizerFast", "model_max_length": 512, "eos_token": "</s>", "pad_token": "<pad>",
         "unk_token": "<unk>", "extra_ids": 0}, indent=2))
    (tok / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2))
    torch.manual_seed(seed + 3)
    config = UMT5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                        feed_forward_proj="gated-gelu")
    UMT5EncoderModel(config).to(torch.bfloat16).save_pretrained(root / "text_encoder", safe_serialization=True)


def make_tiny_clip(root: Path, width: int, seed: int) -> None:
    """image_encoder/ (CLIPVisionModel) and image_processor/ (CLIPImageProcessor, 224 px there, 32 here)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed + 2)
    config = CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8, projection_dim=width)
    CLIPVisionModel(config).save_pretrained(Path(root) / "image_encoder", safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        Path(root) / "image_processor")
