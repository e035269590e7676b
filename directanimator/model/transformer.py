"""CueFusionTransformer3D: diffusers' CogVideoX transformer with the driving cues injected in every
block (paper 3.1, Figure 2b), plus the Table 5 baselines.

Inputs, image-to-video as CogVideoX I2V: `hidden_states` is the noisy latent video concatenated on
channels with the reference-image latent, shape (B, F, 2C, H, W); `reference_layout` says where the
reference latent sits (see `i2v_hidden_states`).
Cues are given on the same latent grid: `pose_latents`/`face_latents` (B, F, C, H, W) from the codec,
`body_mask`/`face_mask` (B, F, 1, H, W) from `cue_fusion.downsample_mask`. With the Location Cue on,
each mask is concatenated to its cue latent (pose + body mask -> e_p, face + face mask -> e_f).

Injection variants (`injection`):
  cuefusion        eqs 1-3, AdaLN-modulated cue tokens added before every block (the paper)
  concat           "DC": cue latents (and masks) concatenated to the input channels
  cross_attention  "CA": a gated cross-attention from vision tokens to cue tokens before every block
  none             no cue at all: diffusers' CogVideoXTransformer3DModel, bit for bit
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.utils import BaseOutput
from torch import nn

from ..errors import InputError
from .cue_fusion import CueCrossAttention, CueFusion, CuePatchEmbed, initialise_cue_modules
from .weights import find_component

INJECTIONS = ("cuefusion", "concat", "cross_attention", "none")
REFERENCE_LAYOUTS = ("first_frame", "all_frames")


@dataclass
class CueFusionOutput(BaseOutput):
    """`sample`: the prediction (B, F, C_out, H, W), None with `features_only`.
    `features`: block depth D (1-based: the vision tokens after block D) -> (B, N, dim); None when
    none were asked for. (None, not an empty dict, by default: accelerate's mixed-precision wrapper
    rebuilds the output as `CueFusionOutput({...})`, which diffusers' BaseOutput unpacks only when
    every field after the first defaults to None; with `{}` the whole dict became `sample`.)"""

    sample: torch.Tensor | None = None
    features: dict[int, torch.Tensor] | None = None


def _check_cue_settings(injection: str, reference_layout: str) -> None:
    if injection not in INJECTIONS:
        raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}")
    if reference_layout not in REFERENCE_LAYOUTS:
        raise ValueError(f"reference_layout must be one of {REFERENCE_LAYOUTS}, got {reference_layout!r}")


class CueFusionTransformer3D(CogVideoXTransformer3DModel):
    """See the module docstring. Saves and loads with `save_pretrained` / `from_pretrained`
    (safetensors); the cue settings are part of its config."""

    # the backbone's defaults are diffusers' CogVideoXTransformer3DModel's (the real 2B/5B model: 49
    # frames, 60 x 90 latents), so a real checkpoint's config.json loads as diffusers loads it; a
    # model built from our YAML configs gets every value from config.py's ModelConfig
    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        # --- the cue stream ---
        injection: str = "cuefusion",
        cue_latent_channels: int | None = None,
        use_face_cue: bool = True,
        use_location_cue: bool = True,
        reference_layout: str = REFERENCE_LAYOUTS[0],
        reference_residual: bool = False,
    ):
        _check_cue_settings(injection, reference_layout)
        cue_latent = cue_latent_channels if cue_latent_channels is not None else (out_channels or in_channels)
        cue_in = cue_latent + (1 if use_location_cue else 0)
        num_cues = 2 if use_face_cue else 1
        backbone_in = in_channels + (num_cues * cue_in if injection == "concat" else 0)
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=backbone_in,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        # diffusers registers the config before running __init__, so the base class has just recorded
        # the widened channel count: record the caller's (the config must rebuild this same model).
        self.register_to_config(in_channels=in_channels)
        self.num_cues, self.cue_in_channels = (num_cues if injection != "none" else 0), cue_in
        self._build_cue_modules(cue_in, num_cues)

    # ------------------------------------------------------------------ construction helpers

    def _build_cue_modules(self, cue_in: int, num_cues: int) -> None:
        """The cue stream of the config's injection: the cue patch embeddings and, per block, CueFusion
        (eqs 1-3) or cross-attention; `concat` widens the input instead, its new channels at zero."""
        cfg = self.config
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        self.cue_embed = nn.ModuleList()
        self.cue_fusion = nn.ModuleList()
        self.cue_cross_attention = nn.ModuleList()
        if cfg.injection in ("cuefusion", "cross_attention"):
            self.cue_embed = nn.ModuleList(
                CuePatchEmbed(cue_in, dim, cfg.patch_size, cfg.patch_size_t) for _ in range(num_cues)
            )
        if cfg.injection == "cuefusion":
            self.cue_fusion = nn.ModuleList(
                CueFusion(cfg.time_embed_dim, dim, num_cues, eps=cfg.norm_eps) for _ in range(cfg.num_layers)
            )
        elif cfg.injection == "cross_attention":
            self.cue_cross_attention = nn.ModuleList(
                CueCrossAttention(dim, cfg.num_attention_heads, cfg.attention_head_dim, eps=cfg.norm_eps)
                for _ in range(cfg.num_layers)
            )
        elif cfg.injection == "concat":
            # The extra input channels start at zero: the backbone sees the cues, but its output is
            # unchanged until training moves these weights.
            self._zero_cue_input_channels(cfg.in_channels)

    @torch.no_grad()
    def _zero_cue_input_channels(self, backbone_in: int) -> None:
        w = self.patch_embed.proj.weight
        if w.device.type == "meta":
            return
        if isinstance(self.patch_embed.proj, nn.Conv2d):
            w[:, backbone_in:] = 0
        else:  # Linear over patches flattened as (C, p_t, p, p), C outermost (CogVideoXPatchEmbed)
            w.view(w.shape[0], -1, self.config.patch_size_t, self.config.patch_size, self.config.patch_size)[
                :, backbone_in:
            ] = 0

    def count_parameters(self) -> dict[str, int]:
        """{'backbone': ..., 'cue': ..., 'total': ...}; for `concat` the cue count is the extra input
        channels of the patch embedding only."""
        total = sum(p.numel() for p in self.parameters())
        cue = sum(p.numel() for m in (self.cue_embed, self.cue_fusion, self.cue_cross_attention) for p in m.parameters())
        if self.config.injection == "concat":
            cue_channels = self.num_cues * self.cue_in_channels
            w = self.patch_embed.proj.weight
            cue += w.numel() * cue_channels // (self.config.in_channels + cue_channels)
        return {"backbone": total - cue, "cue": cue, "total": total}

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> "CueFusionTransformer3D":
        """diffusers' loader, then every tensor copied into freshly allocated memory. Tensors read
        from safetensors can sit at unaligned addresses, and CPU kernels then take other code paths:
        the weights were bit-exact but outputs differed by ~1e-7. After the copy a save/load round
        trip reproduces outputs bit for bit (resumed training continues the same curve)."""
        model = super().from_pretrained(*args, **kwargs)
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                t.data = t.data.clone()
        return model

    @classmethod
    def from_cogvideox(cls, path: str | Path, dtype: torch.dtype = torch.float32,
                       **cue_kwargs: Any) -> "CueFusionTransformer3D":
        """Load a CogVideoX / CogVideoX1.5 I2V transformer from a local folder (the model folder with
        `transformer/`, or the transformer folder itself) and add the cue modules, initialised so
        that the result computes exactly what the checkpoint computes (see CueFusion).

        Built on the meta device: the checkpoint's tensors become the weights (cast to `dtype` one by
        one), and only the cue modules, which the checkpoint lacks, are allocated and initialised.
        Peak memory is about one copy of the weights in `dtype` (5B in bf16: 11 GiB; float32, the
        trainer's master weights: 22 GiB), not a randomly initialised float32 model plus the
        checkpoint."""
        folder = _find_transformer_folder(Path(path))
        base_config = json.loads((folder / "config.json").read_text())
        kwargs = {k: v for k, v in base_config.items() if not k.startswith("_")}
        with torch.device("meta"):
            model = cls(**kwargs, **cue_kwargs)
        state = read_safetensors_folder(folder)
        for k in list(state):  # one tensor at a time: the checkpoint's copy is freed as it goes
            state[k] = state[k].to(dtype)
        own = model.state_dict()
        key = "patch_embed.proj.weight"
        if key in state and own[key].shape != state[key].shape:  # concat: widen with zeros
            wide = torch.zeros(own[key].shape, dtype=dtype)
            src = state[key]
            if src.dim() == 4:
                wide[:, : src.shape[1]] = src
            else:
                p, pt = model.config.patch_size, model.config.patch_size_t
                c = src.shape[1] // (pt * p * p)
                wide.view(wide.shape[0], -1, pt, p, p)[:, :c] = src.view(src.shape[0], c, pt, p, p)
            state[key] = wide
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if unexpected:
            raise InputError(f"{folder}: checkpoint has weights this model does not know: {unexpected[:3]}")
        not_cue = [k for k in missing if not k.startswith(("cue_embed", "cue_fusion", "cue_cross_attention"))]
        if not_cue:
            raise InputError(f"{folder}: checkpoint lacks backbone weights, e.g. {not_cue[:3]}")
        model._materialise(dtype)
        return model

    @torch.no_grad()
    def _materialise(self, dtype: torch.dtype) -> None:
        """After loading a checkpoint into a meta-device model: allocate and initialise what it did not
        hold, the cue modules (as their constructors do) and the non-persistent sin-cos position table."""
        for name in ("cue_embed", "cue_fusion", "cue_cross_attention"):
            initialise_cue_modules(getattr(self, name), dtype)
        pe = self.patch_embed
        if getattr(pe, "pos_embedding", None) is not None and pe.pos_embedding.is_meta:
            table = pe._get_positional_embeddings(pe.sample_height, pe.sample_width, pe.sample_frames)
            pe.register_buffer("pos_embedding", table, persistent=pe.use_learned_positional_embeddings)
        leftover = [n for n, t in [*self.named_parameters(), *self.named_buffers()] if t.is_meta]
        if leftover:
            raise RuntimeError(f"from_cogvideox left tensors unallocated: {leftover[:3]}")

    # ------------------------------------------------------------------ forward helpers

    def rotary_embedding(
        self, latent_frames: int, latent_height: int, latent_width: int, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """RoPE tables as diffusers' CogVideoX pipelines build them (1.0 and 1.5 variants), for a
        latent video of the given size (frames already padded to a multiple of patch_size_t)."""
        cfg = self.config
        if not cfg.use_rotary_positional_embeddings:
            return None
        p, pt = cfg.patch_size, cfg.patch_size_t
        gh, gw = latent_height // p, latent_width // p
        base_w, base_h = cfg.sample_width // p, cfg.sample_height // p
        if pt is None:
            from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

            crops = get_resize_crop_region_for_grid((gh, gw), base_w, base_h)
            return get_3d_rotary_pos_embed(
                embed_dim=cfg.attention_head_dim, crops_coords=crops, grid_size=(gh, gw),
                temporal_size=latent_frames, device=device,
            )
        return get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim, crops_coords=None, grid_size=(gh, gw),
            temporal_size=(latent_frames + pt - 1) // pt, grid_type="slice", max_size=(base_h, base_w),
            device=device,
        )

    def _cue_inputs(
        self,
        latents: torch.Tensor | None,
        mask: torch.Tensor | None,
        name: str,
        like: torch.Tensor,
    ) -> torch.Tensor:
        b, f, _, h, w = like.shape
        if latents is None:
            raise ValueError(f"injection '{self.config.injection}' needs {name}_latents")
        if latents.shape[0] != b or latents.shape[1] != f or latents.shape[3:] != (h, w):
            raise ValueError(f"{name}_latents has shape {tuple(latents.shape)}; expected (B={b}, F={f}, C, {h}, {w})")
        parts = [latents]
        if self.config.use_location_cue:
            if mask is None:
                raise ValueError(f"the Location Cue is on: {name} mask missing")
            if mask.shape != (b, f, 1, h, w):
                raise ValueError(f"{name} mask has shape {tuple(mask.shape)}; expected {(b, f, 1, h, w)}")
            parts.append(mask.to(latents.dtype))
        cue = torch.cat(parts, dim=2) if len(parts) > 1 else latents
        if cue.shape[2] != self.cue_in_channels:
            raise ValueError(f"{name} cue has {cue.shape[2]} channels; this model takes {self.cue_in_channels}")
        return cue

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.Tensor,
        pose_latents: torch.Tensor | None = None,
        face_latents: torch.Tensor | None = None,
        body_mask: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        feature_depths: tuple[int, ...] | list[int] = (),
        features_only: bool = False,
        return_dict: bool = True,
    ) -> CueFusionOutput | tuple:
        """Predict from (B, F, C_in, H, W) latents. With `patch_size_t`, F must be a multiple of it:
        callers pad at the front (`front_padding`, `pad_front`) as diffusers' CogVideoX1.5 I2V pipeline
        does, because the padding frame is a latent of its own (its own noise while sampling), not a
        copy the model could make here. `feature_depths` asks for the vision
        tokens after those blocks (1-based); with `features_only` the blocks after the deepest one are
        skipped and no sample is returned (the frozen Same2X teacher needs nothing more)."""
        cfg = self.config
        injection = cfg.injection
        b, f, _, h, w = hidden_states.shape
        depths = self._check_forward(f, h, w, feature_depths, features_only)
        cues: list[torch.Tensor] = []
        if injection != "none":
            cues.append(self._cue_inputs(pose_latents, body_mask, "pose", hidden_states))
            if cfg.use_face_cue:
                cues.append(self._cue_inputs(face_latents, face_mask, "face", hidden_states))
        if image_rotary_emb is None and cfg.use_rotary_positional_embeddings:
            image_rotary_emb = self.rotary_embedding(f, h, w, device=hidden_states.device)
        if ofs is None and self.ofs_embedding is not None:
            ofs = hidden_states.new_full((b,), 2.0)  # what the CogVideoX1.5 I2V pipeline passes

        # 1. time embedding (as diffusers)
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)  # (B, dim)
        emb = self.time_embedding(t_emb, timestep_cond)  # e_t: (B, time_embed_dim)
        if self.ofs_embedding is not None:
            ofs_emb = self.ofs_proj(ofs).to(dtype=hidden_states.dtype)
            emb = emb + self.ofs_embedding(ofs_emb)

        # 2. patch embedding; "concat" widens the input here
        if injection == "concat":
            hidden_states = torch.cat([hidden_states, *cues], dim=2)  # (B, F, C_in + cues, H, W)
        hidden_states = self.patch_embed(encoder_hidden_states, hidden_states)  # (B, L + N, dim)
        hidden_states = self.embedding_dropout(hidden_states)
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]  # (B, L, dim)
        hidden_states = hidden_states[:, text_seq_length:]  # (B, N, dim), N = F/p_t * H/p * W/p

        # 3. blocks, each preceded by its cue injection
        last = depths[-1] if features_only else len(self.transformer_blocks)
        hidden_states, features = self._run_blocks(hidden_states, encoder_hidden_states, emb, cues, last, depths,
                                                   image_rotary_emb, attention_kwargs)
        if features_only:
            return CueFusionOutput(sample=None, features=features or None) if return_dict else (None, features)

        # 4. output head and unpatchify (as diffusers)
        hidden_states = self.norm_final(hidden_states)
        hidden_states = self.norm_out(hidden_states, temb=emb)
        output = self._unpatchify(self.proj_out(hidden_states), b, f, h, w)  # proj_out: (B, N, p_t * p * p * C_out)
        if not return_dict:
            return (output, features)
        return CueFusionOutput(sample=output, features=features or None)

    def _check_forward(self, f: int, h: int, w: int, feature_depths, features_only: bool) -> list[int]:
        """The input's shape against the patch sizes, and the asked feature depths (sorted, unique)."""
        cfg = self.config
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {cfg.patch_size}")
        depths = check_feature_depths(feature_depths, features_only, cfg.num_layers)
        if front_padding(f, cfg.patch_size_t):
            raise ValueError(
                f"{f} latent frames are not a multiple of patch_size_t={cfg.patch_size_t}: pad them at the front "
                "first (model.front_padding / pad_front, as diffusers' CogVideoX1.5 I2V pipeline does: one more "
                "noise frame, which holds the reference, dropped after denoising)")
        return depths

    def _run_blocks(self, hidden_states, encoder_hidden_states, emb, cues, last: int, depths: list[int],
                    image_rotary_emb, attention_kwargs) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The first `last` blocks, each preceded by its cue injection; the vision tokens after the
        blocks in `depths` (1-based)."""
        injection = self.config.injection
        cue_tokens = [embed(c) for embed, c in zip(self.cue_embed, cues)]  # e_p, e_f: each (B, N, dim)
        cross_context = torch.cat(cue_tokens, dim=1) if injection == "cross_attention" else None
        features: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.transformer_blocks[:last]):
            if injection == "cuefusion":
                # Eqs 1-3; the paper adds e^M "before entering the 3D full attention layers". We add
                # it to the vision tokens' residual stream just before the block, so it reaches the
                # attention through the block's own AdaLN (norm1) and persists in the residual.
                injected, cue_tokens = self.cue_fusion[i](cue_tokens, emb, carry=i + 1 < last)
                hidden_states = hidden_states + injected
            elif injection == "cross_attention":
                hidden_states = self.cue_cross_attention[i](hidden_states, cross_context)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, emb, image_rotary_emb, attention_kwargs
                )
            else:
                hidden_states, encoder_hidden_states = block(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    temb=emb,
                    image_rotary_emb=image_rotary_emb,
                    attention_kwargs=attention_kwargs,
                )
            if i + 1 in depths:
                features[i + 1] = hidden_states
        return hidden_states, features

    def _unpatchify(self, tokens: torch.Tensor, b: int, f: int, h: int, w: int) -> torch.Tensor:
        """(B, N, p_t * p * p * C_out) tokens -> (B, F, C_out, H, W), as diffusers lays them out."""
        p, pt = self.config.patch_size, self.config.patch_size_t
        if pt is None:
            output = tokens.reshape(b, f, h // p, w // p, -1, p, p)
            return output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        output = tokens.reshape(b, f // pt, h // p, w // p, -1, pt, p, p)
        return output.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)


def check_feature_depths(feature_depths, features_only: bool, num_layers: int) -> list[int]:
    """The asked feature depths (1-based block indices), sorted and unique, checked against the model."""
    depths = sorted(set(int(d) for d in feature_depths))
    if depths and not 1 <= depths[0] <= depths[-1] <= num_layers:
        raise ValueError(f"feature depths must lie in 1..{num_layers}, got {depths}")
    if features_only and not depths:
        raise ValueError("features_only needs feature_depths")
    return depths


def front_padding(num_frames: int, patch_size_t: int | None) -> int:
    """How many latent frames go in front of `num_frames` so that a model with `patch_size_t` can take
    them: diffusers' CogVideoX1.5 I2V pipeline samples `patch_size_t - F % patch_size_t` extra latent
    frames at the front (13 -> 14 for 49 video frames), puts the reference latent at frame 0 (the
    padding; zeros after it in `first_frame` layout) and drops the padding before decoding. Its
    fine-tuning scripts (CogVideo's `finetune/`) pad the clean latents the same way, with copies of
    frame 0. 0 for CogVideoX 1.0 (`patch_size_t` None) and for counts that already fit."""
    if not patch_size_t or num_frames % patch_size_t == 0:
        return 0
    return patch_size_t - num_frames % patch_size_t


def pad_front(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, F, ...) with `pad` copies of frame 0 in front: clean latents in training and the driving
    cues of the padding frame (diffusers has no cues; the first frame's are the nearest there are)."""
    if pad == 0:
        return x
    return torch.cat([x[:, :1].expand(-1, pad, *x.shape[2:]), x], dim=1)


def reference_layout_of(model) -> str:
    """The model's `reference_layout` (models saved without one: the first, CogVideoX-I2V's)."""
    return model.config.get("reference_layout", REFERENCE_LAYOUTS[0])


def i2v_hidden_states(noisy: torch.Tensor, reference_latent: torch.Tensor, layout: str) -> torch.Tensor:
    """Image-to-video input: the noisy latents (B, F, C, H, W) concatenated on channels with the
    reference-image latent, placed by `layout`:

    first_frame  latent frame 0 holds the reference, zeros after: what CogVideoX I2V was trained on,
                 so the default for a pretrained CogVideoX (a 5B model has learned to carry frame 0's
                 appearance through its 3D attention).
    all_frames   every latent frame holds the reference. For models trained from scratch: a 4-layer
                 model never learns that carry, and its error against the reference grew 1.2x, 1.9x,
                 2.7x over latent frames 0, 1, 2 with `first_frame`; with `all_frames` each token sees
                 the reference at its own place (held-out SSIM 0.377 -> 0.613 after the same 1,000
                 steps)."""
    b, f, c, h, w = noisy.shape
    if reference_latent.dim() == 4:
        reference_latent = reference_latent.unsqueeze(1)
    if reference_latent.shape != (b, 1, c, h, w):
        raise ValueError(f"reference latent has shape {tuple(reference_latent.shape)}; expected {(b, 1, c, h, w)}")
    ref = reference_latent.to(noisy.dtype)
    if layout == "first_frame":
        image = torch.cat([ref, noisy.new_zeros(b, f - 1, c, h, w)], dim=1)
    elif layout == "all_frames":
        image = ref.expand(-1, f, -1, -1, -1)
    else:
        raise ValueError(f"reference layout must be one of {REFERENCE_LAYOUTS}, got {layout!r}")
    return torch.cat([noisy, image], dim=2)


def _find_transformer_folder(path: Path) -> Path:
    return find_component(path, "transformer", "CogVideoX transformer", "its diffusion_pytorch_model*.safetensors")


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InputError(f"{folder}: no *.safetensors weight file (pickled .bin checkpoints are not loaded)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(str(file)))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise InputError(f"cannot read weight file {file}: {exc}") from None
    return state
