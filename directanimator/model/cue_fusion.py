"""The cue stream of the CueFusion DiT (paper 3.1, Figure 2b, eqs 1-3) and the two baselines it is
compared with in Table 5 (input concatenation and cross-attention).

Pieces:

* `CuePatchEmbed`: one cue latent (pose-cue latents + body mask, or face-cue latents + face mask) to
  one token per vision token, with the backbone's patch sizes and the backbone's token order.
* `CueFusion`: eqs 1-3 for one block.
* `CueCrossAttention`: the Table 5 "CA" baseline, one per block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


def patchify(x: torch.Tensor, patch_size: int, patch_size_t: int | None) -> torch.Tensor:
    """(B, F, C, H, W) -> (B, N, C * p_t * p * p) in the token order of diffusers'
    CogVideoXPatchEmbed: frame (group) major, then rows, then columns."""
    b, f, c, h, w = x.shape
    p = patch_size
    if patch_size_t is None:
        x = x.reshape(b, f, c, h // p, p, w // p, p)
        # channel-major inside a patch, as a Conv2d(kernel=stride=p) weight flattens
        x = x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, f * (h // p) * (w // p), c * p * p)
        return x
    pt = patch_size_t
    x = x.permute(0, 1, 3, 4, 2).reshape(b, f // pt, pt, h // p, p, w // p, p, c)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(4, 7).flatten(1, 3)


class CuePatchEmbed(nn.Module):
    """Patch embedding of a cue latent: e_p or e_f of the paper, one token per vision token.

    A Linear on flattened patches (for `patch_size_t=None` this is the same map as a Conv2d with
    kernel = stride = patch size). No positional embedding: the cue token is added to the vision
    token at the same position, which already carries it (sin-cos added, or RoPE in attention)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, patch_size_t: int | None):
        super().__init__()
        self.patch_size = patch_size
        self.patch_size_t = patch_size_t
        self.proj = nn.Linear(in_channels * patch_size * patch_size * (patch_size_t or 1), dim)

    def forward(self, cue: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(cue, self.patch_size, self.patch_size_t))


class CueFusion(nn.Module):
    """Eqs 1-3 for one DiT block and `num_cues` cues (pose, and face unless switched off).

    (1)  alpha_c, beta_c, gamma_c = MLP(SiLU(e_t))                  for each cue c
    (2)  e_c^M = LN(e_c) * (1 + alpha_c) + beta_c
    (3)  e_c^G = e_c + gamma_c * e_c^M                             (carried to the next block)

    and the vision tokens receive  h <- h + sum_c e_c^M  before the block (see `forward`).

    Choices where the paper is silent, made for safe fine-tuning of a pretrained model:

    * MLP = SiLU then one Linear, exactly as diffusers' AdaLN modules (CogVideoXLayerNormZero).
    * LN has no affine parameters: alpha and beta already are the affine map, as in AdaLN.
    * Initialisation: the Linear's weight is zero and its bias gives alpha = -1, beta = 0, gamma = 0.
      Then (1 + alpha) = 0, so e^M = 0 exactly and e^G = e: at initialisation the model IS the
      backbone, bit for bit, and a pretrained CogVideoX starts unchanged. Unlike zeroing alpha
      (which would inject LN(e) at full strength from step 0), the gradient with respect to alpha is
      LN(e) != 0, so the injection starts learning at once (the adaLN-Zero / zero-conv idea).
    """

    def __init__(self, time_embed_dim: int, dim: int, num_cues: int, eps: float = 1e-5):
        super().__init__()
        self.num_cues = num_cues
        self.dim = dim
        self.silu = nn.SiLU()
        self.linear = nn.Linear(time_embed_dim, 3 * num_cues * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.reset_injection()

    @torch.no_grad()
    def reset_injection(self) -> None:
        """Back to the identity initialisation described in the class docstring."""
        self.linear.weight.zero_()
        bias = self.linear.bias.view(self.num_cues, 3, self.dim)
        bias.zero_()
        bias[:, 0] = -1.0  # alpha = -1  ->  1 + alpha = 0

    def forward(
        self, cues: list[torch.Tensor], temb: torch.Tensor, carry: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """cues: e_c, each (B, N, dim); temb: e_t, (B, time_embed_dim).
        Returns (sum of e_c^M to add to the vision tokens, [e_c^G for the next block]); with
        `carry=False` (the last block) e^G, which nothing would read, is not computed."""
        # (1): (B, num_cues, 3, 1, dim)
        factors = self.linear(self.silu(temb)).view(temb.shape[0], self.num_cues, 3, 1, self.dim)
        return modulate_cues(self.norm, cues, factors, carry)


def modulate_cues(norm: nn.Module, cues: list[torch.Tensor], factors: torch.Tensor,
                  carry: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eqs 2-3 given eq 1's factors (B, num_cues, 3, 1 or N, dim) (alpha, beta, gamma per cue; N when
    each token has its own timestep): (sum of e_c^M, [e_c^G] unless `carry` is off)."""
    injected = None
    carried = []
    for i, e in enumerate(cues):
        alpha, beta, gamma = factors[:, i, 0], factors[:, i, 1], factors[:, i, 2]
        e_m = torch.addcmul(beta, norm(e), 1 + alpha)  # (2)  LN(e) * (1 + alpha) + beta
        if carry:
            carried.append(torch.addcmul(e, gamma, e_m))  # (3)  e + gamma * e^M
        injected = e_m if injected is None else injected + e_m
    assert injected is not None
    return injected, carried


class SharedCueFusion(nn.Module):
    """Eq 1 in the form of Wan's own block modulation (AdaLN-single, as PixArt): one projection of e_t
    shared by all blocks, `shared(SiLU(e_t))`, plus a learned table per block, so block i's
    alpha, beta, gamma = shared(SiLU(e_t)) + table_i; eqs 2-3 as `CueFusion`. A Linear from e_t to
    3 x cues x dim in every block, as on CogVideoX (e_t 512 wide), would cost 6 dim^2 per block where
    e_t is as wide as the model: 6.3 B parameters on Wan2.1-14B's 40 blocks of width 5120, against
    157 M for the shared projection. Identity start as `CueFusion`: the projection at zero, every
    table's alpha at -1."""

    def __init__(self, time_embed_dim: int, dim: int, num_cues: int, num_layers: int, eps: float = 1e-6):
        super().__init__()
        self.num_cues, self.dim = num_cues, dim
        self.silu = nn.SiLU()
        self.shared = nn.Linear(time_embed_dim, 3 * num_cues * dim)
        self.tables = nn.Parameter(torch.zeros(num_layers, num_cues, 3, dim))
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.reset_injection()

    @torch.no_grad()
    def reset_injection(self) -> None:
        self.shared.weight.zero_()
        self.shared.bias.zero_()
        self.tables.zero_()
        self.tables[:, :, 0] = -1.0  # alpha = -1  ->  1 + alpha = 0

    def factors(self, temb: torch.Tensor) -> torch.Tensor:
        """The shared part of eq 1 for e_t (B, D) or per token (B, N, D): (B, num_cues, 3, 1 or N, dim)."""
        f = self.shared(self.silu(temb))
        if temb.dim() == 2:
            return f.view(temb.shape[0], self.num_cues, 3, 1, self.dim)
        return f.view(*temb.shape[:2], self.num_cues, 3, self.dim).permute(0, 2, 3, 1, 4)

    def forward(self, block: int, cues: list[torch.Tensor], shared: torch.Tensor,
                carry: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Block `block`'s injection, given `factors(e_t)` computed once for all blocks."""
        table = self.tables[block].to(shared.dtype)[None, :, :, None]  # (1, num_cues, 3, 1, dim)
        return modulate_cues(self.norm, cues, shared + table, carry)


@torch.no_grad()
def initialise_cue_modules(group: nn.Module, dtype: torch.dtype) -> None:
    """Cue modules built on the meta device (a checkpoint that lacks them was loaded): allocate them
    and initialise them as their constructors do, the zero-injection starts included."""
    if not any(p.is_meta for p in group.parameters()):
        return
    group.to_empty(device="cpu")
    for module in group.modules():  # first every layer's own default initialisation,
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for module in group.modules():  # then the zero-injection starts that override it
        if isinstance(module, (CueFusion, SharedCueFusion)):
            module.reset_injection()
        if isinstance(module, CueCrossAttention):
            module.gate.zero_()
    group.to(dtype)


class CueCrossAttention(nn.Module):
    """Table 5 "CA": the vision tokens attend to the cue tokens (pose and face concatenated along the
    sequence) in a cross-attention added before the block, gated and zero-initialised so that the
    model starts as the backbone:  h <- h + tanh(g) * Attn(LN(h), cues),  g = 0 at init."""

    def __init__(self, dim: int, heads: int, head_dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(
            query_dim=dim,
            cross_attention_dim=dim,
            heads=heads,
            dim_head=head_dim,
            qk_norm="layer_norm",
            eps=1e-6,
            bias=True,
            out_bias=True,
            processor=AttnProcessor2_0(),
        )
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, hidden: torch.Tensor, cue_tokens: torch.Tensor) -> torch.Tensor:
        return hidden + torch.tanh(self.gate) * self.attn(self.norm(hidden), encoder_hidden_states=cue_tokens)


def downsample_mask(mask: torch.Tensor, latent_frames: int, height: int, width: int, temporal: int) -> torch.Tensor:
    """(B, T, 1, H, W) mask in [0, 1] -> (B, latent_frames, 1, height, width) on the latent grid.

    Temporal grouping as the CogVideoX VAE's: latent frame 0 is frame 0 alone, latent frame k >= 1
    covers frames 4k-3 .. 4k (for `temporal` = 4). Each cell is the area average (the fraction of
    the cell covered), so soft masks stay soft."""
    b, t, c, h, w = mask.shape
    expected = 1 + (latent_frames - 1) * temporal
    if t != expected:
        raise ValueError(f"mask has {t} frames; {latent_frames} latent frames need {expected}")
    first = mask[:, :1]
    rest = mask[:, 1:].reshape(b, latent_frames - 1, temporal, c, h, w).mean(dim=2)
    grouped = torch.cat([first, rest], dim=1).flatten(0, 1)
    pooled = F.adaptive_avg_pool2d(grouped, (height, width))
    return pooled.view(b, latent_frames, c, height, width)
