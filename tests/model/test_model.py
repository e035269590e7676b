"""CueFusion DiT: parity with diffusers, eqs 1-3, parameter counts at 5B, save/load, codecs."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

from directanimator.config import load_config
from directanimator.errors import InputError
from directanimator.model import (
    CogVideoXCodec,
    CueFusion,
    CueFusionTransformer3D,
    PixelShuffleCodec,
    build_codec,
    front_padding,
    i2v_hidden_states,
    pad_front,
    reference_layout_of,
    mask_to_latent,
    transformer_kwargs,
)
from directanimator.model.cue_fusion import patchify

from ..conftest import ROOT

# 1.0-style (sin-cos positions, 2D patches) and 1.5-style (RoPE, patch_size_t=2, ofs embedding)
STYLE = {
    "1.0": dict(patch_size_t=None, use_rotary_positional_embeddings=False, ofs_embed_dim=None, patch_bias=True),
    "1.5": dict(patch_size_t=2, use_rotary_positional_embeddings=True, ofs_embed_dim=32, patch_bias=False),
}
C = 4  # latent channels


def small_kwargs(style: str) -> dict:
    return dict(
        num_attention_heads=2, attention_head_dim=16, in_channels=2 * C, out_channels=C, time_embed_dim=32,
        text_embed_dim=16, num_layers=3, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        max_text_seq_length=4, **STYLE[style],
    )


def inputs(frames: int, seed: int = 0, b: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, frames, 2 * C, 8, 8, generator=g)
    enc = torch.randn(b, 4, 16, generator=g)
    cues = dict(
        pose_latents=torch.randn(b, frames, C, 8, 8, generator=g),
        face_latents=torch.randn(b, frames, C, 8, 8, generator=g),
        body_mask=torch.rand(b, frames, 1, 8, 8, generator=g),
        face_mask=torch.rand(b, frames, 1, 8, 8, generator=g),
    )
    return x, enc, torch.tensor([437] * b), cues


def diffusers_twin(model: CueFusionTransformer3D, style: str) -> CogVideoXTransformer3DModel:
    base = CogVideoXTransformer3DModel(**small_kwargs(style))
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("cue_")})
    return base.eval()


def diffusers_forward(base, model, x, enc, t, style):
    """diffusers' own model on the same input."""
    rope = model.rotary_embedding(x.shape[1], 8, 8)
    ofs = torch.full((x.shape[0],), 2.0) if style == "1.5" else None
    return base(x, enc, t, ofs=ofs, image_rotary_emb=rope).sample


@pytest.mark.parametrize("style", ["1.0", "1.5"])
@pytest.mark.parametrize("injection", ["none", "cuefusion"])
@pytest.mark.parametrize("frames", [2, 3])
def test_parity_with_diffusers_bit_exact(style, injection, frames):
    """`none` is diffusers' model; `cuefusion` at initialisation too (1 + alpha = 0, beta = gamma = 0).
    An odd latent count of a 1.5 model is padded at the front first, as the 1.5 pipeline does."""
    torch.manual_seed(0)
    model = CueFusionTransformer3D(**small_kwargs(style), injection=injection).eval()
    base = diffusers_twin(model, style)
    x, enc, t, cues = inputs(frames)
    pad = front_padding(frames, STYLE[style]["patch_size_t"])
    assert pad == (1 if style == "1.5" and frames == 3 else 0)
    x = pad_front(x, pad)
    cues = {k: pad_front(v, pad) for k, v in cues.items()}
    with torch.no_grad():
        ours = model(x, enc, t, **cues).sample
        ref = diffusers_forward(base, model, x, enc, t, style)
    assert ours.shape == (1, frames + pad, C, 8, 8)
    assert torch.equal(ours, ref)


def test_unpadded_odd_latents_are_refused_by_a_1_5_model():
    """The padding frame is a latent of its own (own noise while sampling), so the model does not
    invent one by copying: a count that does not fit patch_size_t is an error naming the fix."""
    model = CueFusionTransformer3D(**small_kwargs("1.5"), injection="cuefusion").eval()
    x, enc, t, cues = inputs(3)
    with pytest.raises(ValueError, match="front_padding"):
        model(x, enc, t, **cues)
    assert front_padding(13, 2) == 1 and front_padding(14, 2) == 0 and front_padding(13, None) == 0
    y = pad_front(torch.arange(3.0).view(1, 3, 1), 1)
    assert y.flatten().tolist() == [0.0, 0.0, 1.0, 2.0]


def perturb_cue_modules(model, scale=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("cue_"):
                p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("injection", ["cuefusion", "cross_attention", "concat"])
def test_trained_injection_makes_every_cue_matter(injection):
    torch.manual_seed(0)
    model = CueFusionTransformer3D(**small_kwargs("1.5"), injection=injection).eval()
    perturb_cue_modules(model)
    if injection == "concat":
        with torch.no_grad():
            model.patch_embed.proj.weight.add_(0.1 * torch.randn_like(model.patch_embed.proj.weight))
    x, enc, t, cues = inputs(4)
    with torch.no_grad():
        out = model(x, enc, t, **cues).sample
        for key in cues:
            changed = dict(cues, **{key: cues[key] + 1.0})
            assert not torch.allclose(model(x, enc, t, **changed).sample, out), key


def reference_cue_fusion(module: CueFusion, cues, temb):
    """Eqs 1-3 written out by hand from the paper, independent of the module's code."""
    w, b = module.linear.weight, module.linear.bias
    silu = temb * torch.sigmoid(temb)
    factors = silu @ w.T + b  # (B, 3 * num_cues * dim)
    d = module.dim
    injected, carried = 0, []
    for i, e in enumerate(cues):
        alpha = factors[:, (3 * i) * d:(3 * i + 1) * d][:, None]
        beta = factors[:, (3 * i + 1) * d:(3 * i + 2) * d][:, None]
        gamma = factors[:, (3 * i + 2) * d:(3 * i + 3) * d][:, None]
        mu = e.mean(-1, keepdim=True)
        var = ((e - mu) ** 2).mean(-1, keepdim=True)
        ln = (e - mu) / torch.sqrt(var + 1e-5)
        e_m = ln * (1 + alpha) + beta
        injected = injected + e_m
        carried.append(e + gamma * e_m)
    return injected, carried


def test_eqs_1_to_3_against_hand_written_reference():
    torch.manual_seed(0)
    module = CueFusion(time_embed_dim=12, dim=10, num_cues=2)
    with torch.no_grad():
        module.linear.weight.normal_()
        module.linear.bias.normal_()
    cues = [torch.randn(3, 7, 10), torch.randn(3, 7, 10)]
    temb = torch.randn(3, 12)
    got_inj, got_carry = module(cues, temb)
    ref_inj, ref_carry = reference_cue_fusion(module, cues, temb)
    torch.testing.assert_close(got_inj, ref_inj, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_carry, ref_carry):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_full_model_carries_eq3_cues_from_block_to_block():
    """The whole CueFusion DiT against a loop written from eqs 1-3: each block's eqs 1-2 read the
    e^G that eq 3 carried out of the block before. (Planted bug it catches: the model feeding every
    block the first cue tokens again, the carry discarded.)"""
    torch.manual_seed(0)
    model = CueFusionTransformer3D(**small_kwargs("1.0"), injection="cuefusion").eval()
    perturb_cue_modules(model)  # gamma != 0: the carried cue differs from the first one
    x, enc, t, cues = inputs(3)
    with torch.no_grad():
        got = model(x, enc, t, **cues, feature_depths=(3,), features_only=True).features[3]
        emb = model.time_embedding(model.time_proj(t).to(x.dtype))
        tokens = model.patch_embed(enc, x)
        text, hidden = tokens[:, : enc.shape[1]], tokens[:, enc.shape[1]:]
        e = [model.cue_embed[0](torch.cat([cues["pose_latents"], cues["body_mask"]], 2)),
             model.cue_embed[1](torch.cat([cues["face_latents"], cues["face_mask"]], 2))]
        for fusion, block in zip(model.cue_fusion, model.transformer_blocks):
            injected, e = reference_cue_fusion(fusion, e, emb)
            hidden, text = block(hidden_states=hidden + injected, encoder_hidden_states=text, temb=emb)
    torch.testing.assert_close(got, hidden, rtol=1e-4, atol=1e-4)


def test_cue_fusion_identity_at_init_but_learns():
    module = CueFusion(time_embed_dim=12, dim=10, num_cues=1)
    e = torch.randn(2, 5, 10)
    injected, (carried,) = module([e], torch.randn(2, 12))
    assert torch.equal(injected, torch.zeros_like(injected)) and torch.equal(carried, e)
    injected.pow(2).sum().backward()  # zero loss, zero gradient: use a linear probe instead
    module.zero_grad()
    injected, _ = module([e], torch.randn(2, 12))
    (injected * torch.randn_like(injected)).sum().backward()
    assert module.linear.bias.grad.abs().sum() > 0  # d e^M / d alpha = LN(e) != 0


def test_patchify_matches_diffusers_token_order():
    """A cue embedded with the backbone's own patch weights gives the backbone's own tokens."""
    for style in ("1.0", "1.5"):
        torch.manual_seed(0)
        model = CueFusionTransformer3D(**small_kwargs(style), injection="cuefusion")
        x = torch.randn(1, 4, 2 * C, 8, 8)
        enc = torch.zeros(1, 4, 16)
        pe = model.patch_embed
        tokens = pe(enc, x)[:, 4:]
        if pe.use_positional_embeddings:  # remove the sin-cos positions the patch embedding adds
            tokens = tokens - pe._get_positional_embeddings(8, 8, 13)[:, 4:].to(tokens.dtype)
        w = pe.proj.weight.reshape(pe.proj.weight.shape[0], -1)
        mine = patchify(x, 2, STYLE[style]["patch_size_t"]) @ w.T
        if pe.proj.bias is not None:
            mine = mine + pe.proj.bias
        torch.testing.assert_close(mine, tokens, rtol=1e-4, atol=1e-4)


def test_features_tap_and_features_only():
    torch.manual_seed(0)
    model = CueFusionTransformer3D(**small_kwargs("1.5"), injection="cuefusion").eval()
    perturb_cue_modules(model)
    x, enc, t, cues = inputs(4)
    with torch.no_grad():
        full = model(x, enc, t, **cues, feature_depths=(1, 2))
        only = model(x, enc, t, **cues, feature_depths=(2,), features_only=True)
    assert set(full.features) == {1, 2} and only.sample is None
    assert full.features[2].shape == (1, 2 * 4 * 4, 32)  # 4 latent frames (padded) / 2 x 4 x 4
    assert torch.equal(full.features[2], only.features[2])
    with pytest.raises(ValueError, match="feature depths"):
        model(x, enc, t, **cues, feature_depths=(4,))


def test_face_and_location_switches_change_the_inputs():
    kw = small_kwargs("1.0")
    no_face = CueFusionTransformer3D(**kw, use_face_cue=False)
    assert no_face.num_cues == 1 and len(no_face.cue_embed) == 1
    no_loc = CueFusionTransformer3D(**kw, use_location_cue=False)
    assert no_loc.cue_in_channels == C
    x, enc, t, cues = inputs(2)
    no_loc(x, enc, t, pose_latents=cues["pose_latents"], face_latents=cues["face_latents"])
    no_face(x, enc, t, pose_latents=cues["pose_latents"], body_mask=cues["body_mask"])
    with pytest.raises(ValueError, match="mask missing"):
        no_face(x, enc, t, pose_latents=cues["pose_latents"])
    with pytest.raises(ValueError, match="pose_latents has shape"):
        no_face(x, enc, t, pose_latents=cues["pose_latents"][:, :1], body_mask=cues["body_mask"])


def test_save_load_round_trip_bit_exact(tmp_path):
    for injection in ("cuefusion", "concat", "cross_attention"):
        torch.manual_seed(0)
        model = CueFusionTransformer3D(**small_kwargs("1.5"), injection=injection, use_face_cue=False).eval()
        perturb_cue_modules(model)
        model.save_pretrained(tmp_path / injection)
        assert (tmp_path / injection / "diffusion_pytorch_model.safetensors").is_file()
        loaded = CueFusionTransformer3D.from_pretrained(tmp_path / injection).eval()
        assert loaded.config.injection == injection and loaded.config.use_face_cue is False
        assert loaded.config.in_channels == 2 * C
        for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k
        x, enc, t, cues = inputs(4)
        cues.pop("face_latents"), cues.pop("face_mask")
        with torch.no_grad():
            assert torch.equal(model(x, enc, t, **cues).sample, loaded(x, enc, t, **cues).sample)


def test_from_cogvideox_starts_as_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    base = CogVideoXTransformer3DModel(**small_kwargs("1.5")).eval()
    base.save_pretrained(tmp_path / "CogVideoX" / "transformer")
    # the checkpoint as diffusers itself loads it: bit for bit the reference. (The model still in memory
    # that wrote it can differ from it in the last bit: 4e-7 with diffusers 0.42.1, its parameters and
    # buffers equal to the loaded ones; not traced further, most likely the CPU kernels' summation order
    # with the loaded tensors' memory. Seen when torch.equal against `base` began to fail on a fresh
    # install, at a commit that had passed CI.)
    loaded = CogVideoXTransformer3DModel.from_pretrained(tmp_path / "CogVideoX" / "transformer").eval()
    x, enc, t, cues = inputs(4)
    for injection in ("cuefusion", "concat", "cross_attention"):
        model = CueFusionTransformer3D.from_cogvideox(tmp_path / "CogVideoX", injection=injection).eval()
        with torch.no_grad():
            ours = model(x, enc, t, **cues).sample
            ref = diffusers_forward(loaded, model, x, enc, t, "1.5")
            in_memory = diffusers_forward(base, model, x, enc, t, "1.5")
        torch.testing.assert_close(ref, in_memory, rtol=1e-5, atol=1e-5)
        if injection == "cuefusion":
            assert torch.equal(ours, ref)
        else:  # zero extra input channels / zero gate: the same up to summation order
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="config.json"):
        CueFusionTransformer3D.from_cogvideox(tmp_path / "nowhere")
    # built on the meta device: weights in the asked dtype, nothing left unallocated, the 1.0 layout's
    # sin-cos position table (not in the checkpoint) rebuilt as the constructor builds it
    half = CueFusionTransformer3D.from_cogvideox(tmp_path / "CogVideoX", dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert not any(t.is_meta for t in [*half.parameters(), *half.buffers()])
    torch.manual_seed(0)
    old = CogVideoXTransformer3DModel(**small_kwargs("1.0")).eval()
    old.save_pretrained(tmp_path / "CogVideoX-1.0" / "transformer")
    loaded = CueFusionTransformer3D.from_cogvideox(tmp_path / "CogVideoX-1.0").eval()
    assert torch.equal(loaded.patch_embed.pos_embedding, old.patch_embed.pos_embedding)
    with torch.no_grad():
        assert torch.equal(loaded(x, enc, t, **cues).sample, diffusers_forward(old, loaded, x, enc, t, "1.0"))


def test_real_size_5b_config_on_meta_device():
    cfg = load_config("configs/cogvideox1.5-5b-i2v.yaml").model
    with torch.device("meta"):
        model = CueFusionTransformer3D(**transformer_kwargs(cfg, 16))
        base = CogVideoXTransformer3DModel(**{k: v for k, v in transformer_kwargs(cfg, 16).items()
                                              if k not in ("injection", "cue_latent_channels", "use_face_cue",
                                                           "use_location_cue", "reference_layout",
                                                           "reference_residual")})
    counts = model.count_parameters()
    print(f"\n5B config: backbone {counts['backbone']:,}  cue modules {counts['cue']:,} "
          f"({100 * counts['cue'] / counts['backbone']:.2f}%)")
    assert counts["backbone"] == sum(p.numel() for p in base.parameters())
    assert 5.5e9 < counts["backbone"] < 5.65e9
    dim, temb, layers, cue_in = 48 * 64, 512, 42, 16 + 1
    per_block = temb * 6 * dim + 6 * dim  # eq 1's Linear for pose and face
    embed = 2 * (cue_in * 2 * 2 * 2 * dim + dim)  # e_p and e_f patch embeddings (p=2, p_t=2)
    assert counts["cue"] == layers * per_block + embed


def test_pixel_shuffle_codec_round_trip_and_frame_grouping():
    codec = PixelShuffleCodec(spatial_factor=4)
    video = torch.rand(2, 9, 3, 16, 24) * 2 - 1
    lat = codec.encode(video)
    assert lat.shape == (2, 3, 192, 4, 6)
    torch.testing.assert_close(codec.decode(lat), video, rtol=0, atol=1e-5)  # orthonormal basis
    # truncated: 2x2 spatial x 2 temporal frequencies keep constant and linear content exactly
    small = PixelShuffleCodec(4, keep_spatial=2, keep_temporal=2, scale=0.75)
    assert small.encode(video).shape == (2, 3, 24, 4, 6)
    flat = torch.full((1, 9, 3, 8, 8), 0.3)
    torch.testing.assert_close(small.decode(small.encode(flat)), flat, rtol=0, atol=1e-5)
    noisy = small.decode(small.encode(video))
    assert 0 < (noisy - video).abs().mean() < 0.5
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        codec.encode(video[:, :8])
    mask = torch.zeros(1, 9, 1, 16, 16)
    mask[:, 5:9, :, :, :8] = 1.0  # frames 5-8 = latent frame 2, left half
    m = mask_to_latent(mask, codec)
    assert m.shape == (1, 3, 1, 4, 4)
    assert torch.equal(m[0, 2, 0, :, :2], torch.ones(4, 2)) and m[0, :2].sum() == 0


def test_cogvideox_codec_with_a_small_random_vae(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(block_out_channels=(32, 32, 32), down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3, latent_channels=4, layers_per_block=1,
                                 norm_num_groups=32, temporal_compression_ratio=4)
    vae.save_pretrained(tmp_path / "vae")
    codec = CogVideoXCodec(tmp_path, sample=False)
    assert (codec.latent_channels, codec.spatial_factor, codec.temporal_factor) == (4, 4, 4)
    video = torch.rand(1, 9, 3, 16, 16) * 2 - 1
    lat = codec.encode(video)
    assert lat.shape == (1, 3, 4, 4, 4)
    assert codec.decode(lat).shape == (1, 9, 3, 16, 16)
    with pytest.raises(InputError, match="vae/config.json"):
        CogVideoXCodec(tmp_path / "missing")


def test_cogvideox_codec_reference_scaling_and_seeded_posterior(tmp_path):
    """The reference latent as diffusers' I2V pipeline makes it (times the scaling factor, or divided
    by it with `invert_scale_latents`, as CogVideoX1.5's VAE says); the posterior sample comes from
    the caller's generator, never the global RNG (the same seed gives the same video)."""
    torch.manual_seed(0)
    kw = dict(block_out_channels=(32, 32, 32), down_block_types=("CogVideoXDownBlock3D",) * 3,
              up_block_types=("CogVideoXUpBlock3D",) * 3, latent_channels=4, layers_per_block=1, norm_num_groups=32,
              temporal_compression_ratio=4, scaling_factor=0.7)
    image = torch.rand(1, 1, 3, 16, 16) * 2 - 1
    for invert in (False, True):
        AutoencoderKLCogVideoX(**kw, invert_scale_latents=invert).save_pretrained(tmp_path / str(invert) / "vae")
        codec = CogVideoXCodec(tmp_path / str(invert), sample=False)
        mode = codec.vae.encode(image.permute(0, 2, 1, 3, 4)).latent_dist.mode().permute(0, 2, 1, 3, 4)
        want = mode / 0.7 if invert else mode * 0.7
        torch.testing.assert_close(codec.encode_reference(image), want)
        torch.testing.assert_close(codec.encode(image), mode * 0.7)  # video latents: always times the factor
    codec = CogVideoXCodec(tmp_path / "True", sample=True)
    video = torch.rand(1, 5, 3, 16, 16) * 2 - 1
    torch.manual_seed(1)
    a = codec.encode(video, torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    b = codec.encode(video, torch.Generator().manual_seed(5))
    c = codec.encode(video, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_i2v_input_layout():
    noisy = torch.randn(2, 3, C, 8, 8)
    ref = torch.randn(2, 1, C, 8, 8)
    x = i2v_hidden_states(noisy, ref, "first_frame")
    assert x.shape == (2, 3, 2 * C, 8, 8)
    assert torch.equal(x[:, :, :C], noisy) and torch.equal(x[:, :1, C:], ref) and x[:, 1:, C:].abs().sum() == 0
    x = i2v_hidden_states(noisy, ref, "all_frames")
    assert torch.equal(x[:, :, :C], noisy) and all(torch.equal(x[:, k:k + 1, C:], ref) for k in range(3))
    with pytest.raises(ValueError, match="reference layout"):
        i2v_hidden_states(noisy, ref, "middle")


def test_reference_layout_is_part_of_the_model_config(tmp_path):
    """A checkpoint remembers its layout; the pipeline's sampler reads it from the model."""
    model = CueFusionTransformer3D(**small_kwargs("1.0"), reference_layout="all_frames")
    model.save_pretrained(tmp_path / "m")
    assert CueFusionTransformer3D.from_pretrained(tmp_path / "m").config.reference_layout == "all_frames"
    assert CueFusionTransformer3D(**small_kwargs("1.0")).config.reference_layout == "first_frame"
    with pytest.raises(ValueError, match="reference_layout"):
        CueFusionTransformer3D(**small_kwargs("1.0"), reference_layout="sideways")


def test_codec_channel_scale_gives_the_chosen_factors_and_round_trips():
    video = torch.rand(1, 9, 3, 16, 16) * 2 - 1
    plain = PixelShuffleCodec(4, keep_spatial=2, keep_temporal=2, scale=0.75)
    factors = [float(k + 1) for k in range(24)]
    scaled = PixelShuffleCodec(4, keep_spatial=2, keep_temporal=2, scale=0.75, channel_scale=factors)
    a, b = plain.encode(video), scaled.encode(video)
    torch.testing.assert_close(b, a * torch.tensor(factors).view(1, 1, -1, 1, 1))
    torch.testing.assert_close(scaled.decode(b), plain.decode(a), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="24 channels"):
        PixelShuffleCodec(4, keep_spatial=2, keep_temporal=2, channel_scale=[1.0] * 3)


def _overfit(injection: str, steps: int) -> tuple[float, float, CueFusionTransformer3D, CueFusionTransformer3D]:
    """Train one tiny model on one synthetic clip with 4 fixed (noise, timestep) pairs."""
    from directanimator.synth.identity import Identity
    from directanimator.synth.motion import Motion
    from directanimator.synth.render import render_clip
    from directanimator.synth.scene import Scene
    from directanimator.train.losses import denoising_loss, make_scheduler

    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml").model
    cfg.injection = injection
    codec = build_codec(cfg)
    clip = render_clip(Identity.from_id(3), Motion.from_id(7), Scene.from_id(1), num_frames=9, size=64)
    video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)[None]
    masks = torch.from_numpy(clip.masks).float()[None, :, None]
    lat = codec.encode(video).expand(4, -1, -1, -1, -1)
    body = mask_to_latent(masks, codec).expand(4, -1, -1, -1, -1)
    model = CueFusionTransformer3D(**transformer_kwargs(cfg, codec.latent_channels))
    initial = copy.deepcopy(model)
    sched = make_scheduler()
    t = torch.tensor([100, 300, 600, 900])
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(0))
    x = i2v_hidden_states(sched.add_noise(lat, noise, t), lat[:, :1], reference_layout_of(model))
    enc = torch.zeros(4, 8, 32)
    assert lat.shape == (4, 3, 24, 16, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        pred = model(x, enc, t, pose_latents=lat, face_latents=lat, body_mask=body, face_mask=body).sample
        loss = denoising_loss(pred, lat, noise, t, sched)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], min(losses[-5:]), model, initial


@pytest.mark.slow
@pytest.mark.parametrize("injection", ["cuefusion", "concat", "cross_attention", "none"])
def test_each_injection_variant_overfits_one_clip(injection):
    first, last, model, initial = _overfit(injection, steps=120)
    print(f"\n{injection}: loss {first:.4f} -> {last:.4f} ({first / last:.1f}x)")
    assert last < first / 10
    if injection != "none":  # the cue modules were trained, not left at their initialisation
        moved = [n for n, p in model.named_parameters()
                 if n.startswith("cue_") and not torch.equal(p, dict(initial.named_parameters())[n])]
        assert moved or injection == "concat"
    if injection == "concat":
        w0 = initial.patch_embed.proj.weight.view(128, -1, 2, 2)[:, 2 * 24:]
        w1 = model.patch_embed.proj.weight.view(128, -1, 2, 2)[:, 2 * 24:]
        assert w0.abs().sum() == 0 and w1.abs().sum() > 0


def test_config_rejects_bad_model_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  injection: adapter\n")
    with pytest.raises(InputError, match="model.injection"):
        load_config(bad)
    bad.write_text("model:\n  frames: 8\n")
    with pytest.raises(InputError, match="1 \\+ 4k"):
        load_config(bad)
    bad.write_text("model:\n  transformer:\n    patch_size_t: two\n")
    with pytest.raises(InputError, match="patch_size_t"):
        load_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("model:\n  transformer:\n    patch_size_t: 2\n  pretrained: null\n")
    assert load_config(ok).model.transformer.patch_size_t == 2


def test_reference_residual_target_round_trips_and_is_zero_on_a_still_video():
    """model.reference_residual: the model denoises the difference from the reference latent; a
    video that is the reference held still is all zeros, and the sampler adds the reference back."""
    from directanimator.model.sampling import diffusion_target, from_diffusion_target

    plain = CueFusionTransformer3D(**small_kwargs("1.0"))
    resid = CueFusionTransformer3D(**small_kwargs("1.0"), reference_residual=True)
    ref = torch.randn(2, 1, C, 8, 8)
    still = ref.expand(-1, 3, -1, -1, -1).clone()
    moving = torch.randn(2, 3, C, 8, 8)
    assert torch.equal(diffusion_target(plain, moving, ref), moving)
    assert diffusion_target(resid, still, ref).abs().max() == 0
    torch.testing.assert_close(from_diffusion_target(resid, diffusion_target(resid, moving, ref), ref), moving)


def test_gpu_memory_estimate_follows_the_parameter_counts():
    """benchmarks/gpu.py --estimate: exact meta-device counts, and bytes per parameter as documented."""
    from ..scripts import load_benchmark

    gpu = load_benchmark("gpu")
    est = gpu.estimate(gpus=8, lora_rank=64)
    total = est["parameters"]
    assert total == 5_571_594_880 + 397_977_600  # backbone + cue modules (benchmarks/model.py, BENCHMARKS.md)
    rows, gib = est["rows"], 1024 ** 3
    full = rows["train full, same-ID"]
    assert full["trainable"] == total and abs(full["grads+adam"] - 12 * total / gib) < 1e-6
    assert abs(rows["train full, same-ID, ZeRO-2 x8"]["grads+adam"] - full["grads+adam"] / 8) < 1e-6
    lora, cue = rows["train lora, same-ID"], rows["train cue_only, same-ID"]
    assert cue["trainable"] == 397_977_600 < lora["trainable"] < total
    assert rows["train lora, cross-ID"]["teacher"] == 2 * total / gib
    assert full["total"] > lora["total"] > cue["total"]
    assert est["tokens"] == 7 * 32 * 32 + 224
    eight = rows["train full, same-ID, 8-bit AdamW (train.optimizer: adamw8bit)"]
    assert abs(eight["grads+adam"] - 6 * total / gib) < 1e-6  # fp32 grads + two 8-bit moments
    half = rows["train lora, same-ID, frozen backbone bf16 (train.frozen_dtype: bfloat16)"]
    assert abs(half["weights"] - (2 * (total - lora["trainable"]) + 4 * lora["trainable"]) / gib) < 1e-6


@pytest.mark.slow
def test_gpu_measure_script_runs_its_rows_on_cpu():
    """benchmarks/gpu.py --measure --smoke: the GPU measurement's own code, every row, on the CPU with one
    block of the real layout, 2 heads wide (GPU time is rare: a broken script would waste it; this
    caught the 13 latent frames of 49 that the padded model refuses)."""
    import subprocess
    import sys
    from pathlib import Path

    root = ROOT
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu.py"), "--measure", "--smoke", "--runs", "1"],
                       capture_output=True, text=True, timeout=600, cwd=root, env={**__import__("os").environ,
                                                                                    "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| ")]
    assert len(rows) == 7 and not any("n/a" in ln for ln in rows), r.stdout[-1500:]
    assert any("8-bit AdamW" in ln for ln in rows) and any("frozen backbone bf16" in ln for ln in rows)
