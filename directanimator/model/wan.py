"""WanCueFusionTransformer3D: the CueFusion cue stream (paper 3.1, eqs 1-3) on diffusers'
WanTransformer3DModel, the backbone of Wan2.1-I2V-14B and Wan2.2-TI2V-5B.

Every tensor is in Wan's own layout, as diffusers' Wan pipelines pass it: `hidden_states`
(B, C, F, H, W) (for Wan2.1 I2V the noisy latents, the 4-channel first-frame mask and the image
latent on channels; for Wan2.2 TI2V the latents with the reference in frame 0), the cue latents
`pose_latents`/`face_latents` (B, C, F, H, W) on the same latent grid and the Location Cue's masks
`body_mask`/`face_mask` (B, 1, F, H, W). The prediction is (B, C_out, F, H, W).

Where the cues go. The Pose Cue is added to the vision tokens before every block, modulated and
gated by the timestep (eqs 1-3), exactly as on CogVideoX. CogVideoX has one joint attention over
text and vision tokens, so there the Face Cue reaches the vision tokens the same way. Wan's blocks
instead have a self-attention over the vision tokens and a cross-attention to the text (and, for
Wan2.1 I2V, the CLIP image tokens). The Face Cue could go into that cross-attention context, but its
tokens are on the vision tokens' grid: added to the vision tokens, each face-cue token lands on the
place of the video it describes (which the context has no notion of, Wan's context carries no
positions), the cue modules stay those of eqs 1-3 (the same code, the same identity start), and the
context keeps the pretrained model's text-and-image contents. So the Face Cue is added to the vision
tokens too, as a second cue of the same CueFusion module.

Eq 1 takes Wan's own modulation form: one projection of e_t shared by all blocks plus a learned table
per block (`SharedCueFusion`: a per-block Linear as on CogVideoX would add 6.3 B parameters to
Wan2.1-14B, whose e_t is 5120 wide). Wan2.2 TI2V gives each token its own timestep (0 for the
reference frame's tokens): the cue modulation then follows each token's timestep.

With `injection="none"`, or at initialisation (the zero-injection start of `CueFusion`), the model
computes exactly what diffusers' WanTransformer3DModel computes with the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
from diffusers.utils.peft_utils import apply_lora_scale
from torch import nn

from ..errors import InputError
from .cue_fusion import CuePatchEmbed, SharedCueFusion, initialise_cue_modules
from .transformer import CueFusionOutput, check_feature_depths, read_safetensors_folder
from .weights import find_component

WAN_INJECTIONS = ("cuefusion", "none")
CUE_MODULES = ("cue_embed", "cue_fusion")


class WanCueFusionTransformer3D(WanTransformer3DModel):
    """See the module docstring. Saves and loads with `save_pretrained` / `from_pretrained`
    (safetensors); the cue settings are part of its config. The backbone's defaults are diffusers'
    (Wan2.1 14B); a real folder's config.json sets them."""

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        # --- the cue stream ---
        injection: str = "cuefusion",
        cue_latent_channels: int | None = None,
        use_face_cue: bool = True,
        use_location_cue: bool = True,
    ):
        if injection not in WAN_INJECTIONS:
            raise ValueError(f"injection on Wan must be one of {WAN_INJECTIONS}, got {injection!r}")
        pt, ph, pw = patch_size
        if ph != pw:
            raise ValueError(f"the cue stream needs square spatial patches, got {tuple(patch_size)}")
        super().__init__(
            patch_size=patch_size, num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            in_channels=in_channels, out_channels=out_channels, text_dim=text_dim, freq_dim=freq_dim,
            ffn_dim=ffn_dim, num_layers=num_layers, cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps,
            image_dim=image_dim, added_kv_proj_dim=added_kv_proj_dim, rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        dim = num_attention_heads * attention_head_dim
        num_cues = (2 if use_face_cue else 1) if injection != "none" else 0
        self.num_cues = num_cues
        self.cue_in_channels = (cue_latent_channels or out_channels or in_channels) + (1 if use_location_cue else 0)
        self.cue_embed = nn.ModuleList(
            CuePatchEmbed(self.cue_in_channels, dim, ph, pt if pt > 1 else None) for _ in range(num_cues))
        self.cue_fusion = nn.ModuleList(  # empty, or the one module of all blocks (see SharedCueFusion)
            [SharedCueFusion(dim, dim, num_cues, num_layers, eps=eps)] if num_cues else [])

    def count_parameters(self) -> dict[str, int]:
        """{'backbone': ..., 'cue': ..., 'total': ...}."""
        total = sum(p.numel() for p in self.parameters())
        cue = sum(p.numel() for name in CUE_MODULES for p in getattr(self, name).parameters())
        return {"backbone": total - cue, "cue": cue, "total": total}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_wan(cls, path: str | Path, dtype: torch.dtype = torch.float32,
                 **cue_kwargs: Any) -> "WanCueFusionTransformer3D":
        """A Wan transformer from a local diffusers folder (the model folder with `transformer/`, or
        the transformer folder itself) with the cue modules added, initialised so that the result
        computes what the checkpoint computes. Built on the meta device: the checkpoint's tensors
        become the weights one by one (cast to `dtype`, except the modules diffusers keeps in float32,
        `_keep_in_fp32_modules`, as its own loader does), and only what the checkpoint lacks, the cue
        modules and the rotary tables, is allocated."""
        folder = find_component(Path(path), "transformer", "Wan transformer",
                                "its diffusion_pytorch_model*.safetensors")
        base = json.loads((folder / "config.json").read_text())
        if base.get("_class_name", "WanTransformer3DModel") != "WanTransformer3DModel":
            raise InputError(f"{folder}: a {base['_class_name']} folder, not a Wan transformer")
        kwargs = {k: v for k, v in base.items() if not k.startswith("_")}
        with torch.device("meta"):
            model = cls(**kwargs, **cue_kwargs)
        state = read_safetensors_folder(folder)
        for k in list(state):
            state[k] = state[k].to(torch.float32 if model._keeps_fp32(k) else dtype)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        unexpected = [k for k in unexpected if "norm_added_q" not in k]  # diffusers ignores it too
        if unexpected:
            raise InputError(f"{folder}: checkpoint has weights this model does not know: {unexpected[:3]}")
        not_cue = [k for k in missing if not k.startswith(CUE_MODULES)]
        if not_cue:
            raise InputError(f"{folder}: checkpoint lacks backbone weights, e.g. {not_cue[:3]}")
        model._materialise(dtype)
        return model

    def _keeps_fp32(self, name: str) -> bool:
        return any(m in name.split(".") for m in self._keep_in_fp32_modules or ())

    @torch.no_grad()
    def _materialise(self, dtype: torch.dtype) -> None:
        for name in CUE_MODULES:
            initialise_cue_modules(getattr(self, name), dtype)
        cfg = self.config
        self.rope = WanRotaryPosEmbed(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len)
        leftover = [n for n, t in [*self.named_parameters(), *self.named_buffers()] if t.is_meta]
        if leftover:
            raise RuntimeError(f"from_wan left tensors unallocated: {leftover[:3]}")

    # ------------------------------------------------------------------ forward

    def _cue_tokens(self, latents, mask, name: str, like: torch.Tensor, embed: CuePatchEmbed) -> torch.Tensor:
        """One cue (B, C, F, H, W) (+ its mask (B, 1, F, H, W)) -> its tokens (B, N, dim), e_p or e_f."""
        b, _, f, h, w = like.shape
        if latents is None:
            raise ValueError(f"injection '{self.config.injection}' needs {name}_latents")
        if latents.shape[0] != b or latents.shape[2:] != (f, h, w):
            raise ValueError(f"{name}_latents has shape {tuple(latents.shape)}; expected (B={b}, C, {f}, {h}, {w})")
        parts = [latents]
        if self.config.use_location_cue:
            if mask is None or mask.shape != (b, 1, f, h, w):
                got = None if mask is None else tuple(mask.shape)
                raise ValueError(f"the Location Cue is on: {name} mask has shape {got}; expected {(b, 1, f, h, w)}")
            parts.append(mask.to(latents.dtype))
        cue = torch.cat(parts, dim=1)
        if cue.shape[1] != self.cue_in_channels:
            raise ValueError(f"{name} cue has {cue.shape[1]} channels; this model takes {self.cue_in_channels}")
        return embed(cue.transpose(1, 2).to(embed.proj.weight.dtype))  # CuePatchEmbed reads (B, F, C, H, W)

    @apply_lora_scale("attention_kwargs")
    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        pose_latents: torch.Tensor | None = None,
        face_latents: torch.Tensor | None = None,
        body_mask: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        feature_depths: tuple[int, ...] | list[int] = (),
        features_only: bool = False,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> CueFusionOutput | tuple:
        """diffusers' Wan forward (same arguments first, same result with the cues off) with the cue
        injection before every block. `feature_depths`: the vision tokens after those blocks
        (1-based); with `features_only` the later blocks are skipped and no sample is returned."""
        b, _, f, h, w = hidden_states.shape
        pt, ph, pw = self.config.patch_size
        depths = check_feature_depths(feature_depths, features_only, self.config.num_layers)
        rotary_emb = self.rope(hidden_states)
        tokens = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        cues = [self._cue_tokens(lat, m, n, hidden_states, e) for (lat, m, n), e in
                zip(((pose_latents, body_mask, "pose"), (face_latents, face_mask, "face")), self.cue_embed)]
        ts_seq_len = timestep.shape[1] if timestep.ndim == 2 else None  # Wan2.2 TI2V: one per token
        temb, timestep_proj, context, context_image = self.condition_embedder(
            timestep.flatten() if ts_seq_len else timestep, encoder_hidden_states, encoder_hidden_states_image,
            timestep_seq_len=ts_seq_len)
        timestep_proj = timestep_proj.unflatten(2 if ts_seq_len else 1, (6, -1))
        if context_image is not None:
            context = torch.concat([context_image, context], dim=1)
        last = depths[-1] if features_only else len(self.blocks)
        tokens, features = self._run_blocks(tokens, context, timestep_proj, rotary_emb, temb, cues, last, depths)
        if features_only:
            return CueFusionOutput(sample=None, features=features or None) if return_dict else (None, features)
        output = self._head(tokens, temb).reshape(b, f // pt, h // ph, w // pw, pt, ph, pw, -1)
        output = output.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return CueFusionOutput(sample=output, features=features or None) if return_dict else (output, features)

    def _run_blocks(self, tokens, context, timestep_proj, rotary_emb, temb, cues, last: int, depths: list[int]):
        """The first `last` blocks, each preceded by the cue injection (eqs 1-3, e_t = Wan's temb, the
        shared part of eq 1 computed once); the vision tokens after the blocks in `depths`."""
        features: dict[int, torch.Tensor] = {}
        shared = self.cue_fusion[0].factors(temb) if cues else None
        for i, block in enumerate(self.blocks[:last]):
            if cues:
                injected, cues = self.cue_fusion[0](i, cues, shared, carry=i + 1 < last)
                tokens = tokens + injected.to(tokens.dtype)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(block, tokens, context, timestep_proj, rotary_emb)
            else:
                tokens = block(tokens, context, timestep_proj, rotary_emb)
            if i + 1 in depths:
                features[i + 1] = tokens
        return tokens, features

    def _head(self, tokens: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """diffusers' output norm and projection (per-token shift and scale for Wan2.2 TI2V)."""
        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        shift, scale = shift.to(tokens.device), scale.to(tokens.device)
        tokens = (self.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        return self.proj_out(tokens)
