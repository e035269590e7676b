"""The cue stream on diffusers' Wan transformer: the backbone's own output with the cues off or at
initialisation, cues that reach the output once trained, and loading of real-layout folders."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from directanimator.model.wan import WanCueFusionTransformer3D

from ..wan_folder import TEXT_DIM, make_tiny_wan_transformer, wan21_i2v_config, wan22_ti2v_config

FRAMES, HEIGHT, WIDTH = 3, 4, 6  # latent grid
VARIANTS = {"wan2.1-i2v": wan21_i2v_config, "wan2.2-ti2v": wan22_ti2v_config}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory):
    config = VARIANTS[request.param]()
    return request.param, config, make_tiny_wan_transformer(tmp_path_factory.mktemp(request.param), config)


def inputs(config: dict, seed: int = 0, batch: int = 2) -> dict:
    """What diffusers' Wan pipelines pass, and the cues on the same latent grid."""
    g = torch.Generator().manual_seed(seed)
    grid = (FRAMES, HEIGHT, WIDTH)
    cue_c = config["out_channels"]
    args = dict(
        hidden_states=torch.randn(batch, config["in_channels"], *grid, generator=g),
        timestep=torch.tensor([700.0, 20.0][:batch]),
        encoder_hidden_states=torch.randn(batch, 7, TEXT_DIM, generator=g),
        pose_latents=torch.randn(batch, cue_c, *grid, generator=g),
        face_latents=torch.randn(batch, cue_c, *grid, generator=g),
        body_mask=torch.rand(batch, 1, *grid, generator=g),
        face_mask=torch.rand(batch, 1, *grid, generator=g),
    )
    if config["image_dim"]:
        args["encoder_hidden_states_image"] = torch.randn(batch, 5, config["image_dim"], generator=g)
    else:  # Wan2.2 TI2V: one timestep per token, 0 for the reference frame's tokens
        per_token = args["timestep"][:, None].repeat(1, FRAMES * (HEIGHT // 2) * (WIDTH // 2))
        per_token[:, : (HEIGHT // 2) * (WIDTH // 2)] = 0
        args["timestep"] = per_token
    return args


def backbone_only(args: dict) -> dict:
    return {k: v for k, v in args.items() if not k.endswith(("_latents", "_mask"))}


def test_cues_off_and_at_start_the_model_is_diffusers_wan_bit_for_bit(variant):
    from diffusers import WanTransformer3DModel

    _, config, folder = variant
    ref = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.float32)
    args = inputs(config)
    with torch.no_grad():
        expected = ref(**backbone_only(args)).sample
        for injection in ("none", "cuefusion"):
            ours = WanCueFusionTransformer3D.from_wan(folder, injection=injection)
            given = args if injection == "cuefusion" else backbone_only(args)
            assert torch.equal(ours(**given).sample, expected), injection
    assert ours.count_parameters()["cue"] > 0


def test_bf16_loading_keeps_what_diffusers_keeps_in_float32(variant):
    from diffusers import WanTransformer3DModel

    _, config, folder = variant
    ref = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
    ours = WanCueFusionTransformer3D.from_wan(folder, dtype=torch.bfloat16)
    dtypes = {n: p.dtype for n, p in ref.named_parameters()}
    assert {n: p.dtype for n, p in ours.named_parameters() if n in dtypes} == dtypes
    assert torch.float32 in dtypes.values() and torch.bfloat16 in dtypes.values()
    args = {k: v.to(torch.bfloat16) if v.is_floating_point() and k != "timestep" else v
            for k, v in inputs(config).items()}
    with torch.no_grad():
        assert torch.equal(ours(**args).sample, ref(**backbone_only(args)).sample)


def trained(model: WanCueFusionTransformer3D, seed: int = 1) -> WanCueFusionTransformer3D:
    """The cue modules moved off their zero start, as training moves them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("cue_embed", "cue_fusion"):
            for p in getattr(model, name).parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def test_each_cue_reaches_the_prediction_once_trained(variant):
    _, config, folder = variant
    model = trained(WanCueFusionTransformer3D.from_wan(folder))
    args = inputs(config)
    with torch.no_grad():
        base = model(**args).sample
        assert base.shape == (2, config["out_channels"], FRAMES, HEIGHT, WIDTH)
        for key in ("pose_latents", "face_latents", "body_mask", "face_mask"):
            moved = dict(args, **{key: args[key].flip(0)})
            assert not torch.allclose(model(**moved).sample, base), key
        # one sample's cues change only that sample's prediction
        moved = dict(args, pose_latents=torch.cat([args["pose_latents"][:1], -args["pose_latents"][1:]]))
        out = model(**moved).sample
        assert torch.equal(out[0], base[0]) and not torch.allclose(out[1], base[1])


def test_the_injection_learns_from_the_first_step(variant):
    """At the zero start the output ignores the cues, but the gradient reaches the modulation."""
    _, config, folder = variant
    model = WanCueFusionTransformer3D.from_wan(folder)
    model(**inputs(config)).sample.square().mean().backward()
    assert model.cue_fusion[0].tables.grad[:, :, 0].abs().sum() > 0  # alpha: d/d alpha = LN(e) != 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.cue_embed.parameters())


def test_features_and_features_only_agree(variant):
    _, config, folder = variant
    model = trained(WanCueFusionTransformer3D.from_wan(folder))
    args = inputs(config)
    with torch.no_grad():
        full = model(**args, feature_depths=(1, 2))
        only = model(**args, feature_depths=(1,), features_only=True)
    assert only.sample is None and set(full.features) == {1, 2}
    assert torch.equal(only.features[1], full.features[1])
    with pytest.raises(ValueError, match="feature depths"):
        model(**args, feature_depths=(3,))


def test_save_and_load_round_trip(variant, tmp_path):
    _, config, folder = variant
    model = trained(WanCueFusionTransformer3D.from_wan(folder, use_face_cue=False))
    model.save_pretrained(tmp_path / "saved")
    back = WanCueFusionTransformer3D.from_pretrained(tmp_path / "saved")
    assert back.config.use_face_cue is False and len(back.cue_embed) == 1
    args = {k: v for k, v in inputs(config).items() if not k.startswith("face")}
    with torch.no_grad():
        assert torch.equal(back(**args).sample, model(**args).sample)


def test_bad_cue_inputs_are_clear_errors(variant):
    _, config, folder = variant
    model = WanCueFusionTransformer3D.from_wan(folder)
    args = inputs(config)
    with pytest.raises(ValueError, match="needs pose_latents"):
        model(**dict(args, pose_latents=None))
    with pytest.raises(ValueError, match="face mask has shape"):
        model(**dict(args, face_mask=args["face_mask"][:, :, :1]))
    with pytest.raises(ValueError, match="injection on Wan"):
        WanCueFusionTransformer3D(**config, injection="concat")


def test_a_folder_that_is_not_wan_is_refused(tmp_path):
    from directanimator.errors import InputError

    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text('{"_class_name": "CogVideoXTransformer3DModel"}')
    with pytest.raises(InputError, match="not a Wan transformer"):
        WanCueFusionTransformer3D.from_wan(tmp_path)
    with pytest.raises(InputError):
        WanCueFusionTransformer3D.from_wan(tmp_path / "nowhere")


def test_cue_tokens_are_in_wans_token_order(variant):
    """A cue patch embedding given the weights of Wan's own patch embedding makes Wan's tokens: each
    cue token lands on the vision token of its place."""
    _, config, folder = variant
    model = WanCueFusionTransformer3D.from_wan(folder, use_location_cue=False,
                                               cue_latent_channels=config["in_channels"])
    embed = model.cue_embed[0]
    conv = model.patch_embedding
    with torch.no_grad():
        embed.proj.weight.copy_(conv.weight.flatten(1))
        embed.proj.bias.copy_(conv.bias)
        x = inputs(config)["hidden_states"]
        expected = conv(x).flatten(2).transpose(1, 2)
        torch.testing.assert_close(model._cue_tokens(x, None, "pose", x, embed), expected)


def test_per_token_timesteps_modulate_each_token_by_its_own():
    """Wan2.2 TI2V: with one e_t per token, each token's e^M is what the shared-e_t form gives it."""
    from directanimator.model.cue_fusion import SharedCueFusion

    torch.manual_seed(0)
    fusion = SharedCueFusion(8, 8, num_cues=2, num_layers=3)
    with torch.no_grad():
        for p in fusion.parameters():
            p.normal_()
    cues = [torch.randn(2, 5, 8), torch.randn(2, 5, 8)]
    temb = torch.randn(2, 5, 8)
    injected, carried = fusion(1, cues, fusion.factors(temb))
    for n in range(5):
        one, one_carried = fusion(1, [c[:, n:n + 1] for c in cues], fusion.factors(temb[:, n]))
        torch.testing.assert_close(injected[:, n:n + 1], one)
        for c, o in zip(carried, one_carried):
            torch.testing.assert_close(c[:, n:n + 1], o)
    other, _ = fusion(2, cues, fusion.factors(temb))  # each block its own table
    assert not torch.allclose(other, injected)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def wan_folder(request, tmp_path_factory):
    from ..wan_folder import make_tiny_wan_folder

    return request.param, make_tiny_wan_folder(tmp_path_factory.mktemp(request.param + "-full"), request.param)


def test_sampling_matches_diffusers_wan_image_to_video_pipeline(wan_folder):
    """The whole tiny folder loads with diffusers' own WanImageToVideoPipeline; with the cue stream at
    its zero start our text encoding, sampler and Wan's VAE give its frames for the same image, prompt,
    seed and steps (within one 8-bit level)."""
    import numpy as np
    from diffusers import WanImageToVideoPipeline

    from directanimator.model.codec import WanVAECodec
    from directanimator.model.text import UMT5PromptEncoder
    from directanimator.model.wan_sampling import (WanImageEncoder, build_wan_scheduler, sample_wan_latents,
                                                   wan_condition, wan_form)

    name, folder = wan_folder
    frames, size = 9, (64, 96)
    config = VARIANTS[name]()
    g = torch.Generator().manual_seed(3)
    image = (torch.rand(size[0], size[1], 3, generator=g) * 255).to(torch.uint8).numpy()
    text = "a person  walks in a red room &amp; waves"
    pipe = WanImageToVideoPipeline.from_pretrained(folder, dtype=torch.float32)
    assert (pipe.image_encoder is not None) == bool(config["image_dim"])
    assert pipe.config.expand_timesteps == (name == "wan2.2-ti2v")
    expected = pipe(image=Image.fromarray(image), prompt=text, height=size[0], width=size[1], num_frames=frames,
                    num_inference_steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                    output_type="np").frames[0]

    prompt = UMT5PromptEncoder(folder)([text])
    used = prompt[0].abs().sum(-1) > 0
    k = int(used.sum())  # the prompt's own tokens, then zeros
    assert prompt.shape == (1, 512, TEXT_DIM) and 0 < k < 512 and used[:k].all() and not used[k:].any()
    model = WanCueFusionTransformer3D.from_wan(folder)
    codec = WanVAECodec(folder, sample=False)
    reference = torch.from_numpy(image).permute(2, 0, 1)[None, None].float() / 127.5 - 1
    image_embeds = WanImageEncoder(folder)(image) if config["image_dim"] else None
    cond = wan_condition(codec, reference, frames, wan_form(model), image_embeds)
    cues = inputs(config, batch=1)
    f, h, w = cond.latents.shape[2:]
    cues = {k: torch.randn(1, v.shape[1], f, h, w) if k.endswith("latents") else torch.rand(1, 1, f, h, w)
            for k, v in cues.items() if k in ("pose_latents", "face_latents", "body_mask", "face_mask")}
    latents = sample_wan_latents(model, build_wan_scheduler(folder), cond, prompt, 3,
                                 torch.Generator().manual_seed(0), cues=cues)
    video = codec.decode(latents.permute(0, 2, 1, 3, 4))[0].permute(0, 2, 3, 1).numpy()
    ours = np.round((video + 1) * 127.5).clip(0, 255)
    theirs = np.round(expected * 255).clip(0, 255)
    assert ours.shape == theirs.shape == (frames, *size, 3) and theirs.std() > 5  # not a blank video
    assert np.abs(ours - theirs).max() <= 1
    # in float32 on the CPU the same operations give the same numbers: far tighter than one level, so
    # that a wrong detail (the reference frame's timestep of TI2V: 0.007) cannot hide under rounding
    assert np.abs(video - (expected * 2 - 1)).max() < 1e-4


def test_wan_codec_shapes_and_causal_first_frame(wan_folder):
    """A video of 1 + 4k frames -> 1 + k latent frames on the VAE's grid and back; the first latent
    frame of a video is the latent of its first frame alone (the reference's, for TI2V)."""
    from directanimator.model.codec import WanVAECodec

    name, folder = wan_folder
    codec = WanVAECodec(folder, sample=False)
    video = torch.rand(1, 9, 3, 32, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = codec.encode(video)
    s = codec.spatial_factor
    assert s == (16 if name == "wan2.2-ti2v" else 8) and codec.temporal_factor == 4
    assert z.shape == (1, 3, codec.latent_channels, 32 // s, 64 // s)
    torch.testing.assert_close(codec.encode_reference(video[:, :1]), z[:, :1], rtol=1e-4, atol=1e-5)
    assert codec.decode(z).shape == video.shape
    with pytest.raises(Exception, match="frames"):
        codec.encode(video[:, :8])


def training_batch(folder, name: str, seed: int = 0):
    """Two clips' clean latents and condition from the tiny folder's VAE, their cues, a prompt."""
    from directanimator.model.codec import WanVAECodec
    from directanimator.model.wan_sampling import WanImageEncoder, wan_condition

    config = VARIANTS[name]()
    codec = WanVAECodec(folder, sample=False)
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(2, 9, 3, 32, 64, generator=g) * 2 - 1
    latents = codec.encode(video).permute(0, 2, 1, 3, 4)  # Wan's layout
    images = None
    if config["image_dim"]:
        encoder = WanImageEncoder(folder)
        images = torch.cat([encoder(((v[0].permute(1, 2, 0) + 1) * 127.5).byte().numpy()) for v in video])
    cond = wan_condition(codec, video[:, :1], 9, "ti2v" if name == "wan2.2-ti2v" else "i2v", images)
    b, c, f, h, w = latents.shape
    cues = {"pose_latents": torch.randn(b, c, f, h, w, generator=g), "face_latents": torch.randn(b, c, f, h, w, generator=g),
            "body_mask": torch.rand(b, 1, f, h, w, generator=g), "face_mask": torch.rand(b, 1, f, h, w, generator=g)}
    return latents, cond, torch.randn(1, 7, TEXT_DIM, generator=g).expand(b, -1, -1), cues


def test_flow_matching_loss_targets_and_training_steps(wan_folder):
    """The loss is the velocity error e - x_0 at x_s (TI2V: the reference frame clean and unscored); a
    few optimiser steps on one batch bring it down, cue modules included; the S2X features come out."""
    from directanimator.model.wan_sampling import flow_sigmas, wan_flow_loss

    name, folder = wan_folder
    latents, cond, prompt, cues = training_batch(folder, name)
    model = WanCueFusionTransformer3D.from_wan(folder)
    sigma = flow_sigmas(2, 3.0, torch.Generator().manual_seed(1))
    assert ((0 < sigma) & (sigma < 1)).all()
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    wrong_first = (noise - latents).clone()
    wrong_first[:, :, 0] += 1

    class Oracle(torch.nn.Module):
        """Predicts `answer` whatever it is given."""

        def __init__(self, answer):
            super().__init__()
            self.config, self.answer, self.dummy = model.config, answer, torch.nn.Parameter(torch.zeros(1))

        def forward(self, hidden_states, **kwargs):
            from directanimator.model.transformer import CueFusionOutput

            return CueFusionOutput(sample=self.answer, features=None)

    with torch.no_grad():  # the exact velocity scores zero; an error on the reference frame counts for i2v only
        assert wan_flow_loss(Oracle(noise - latents), latents, cond, prompt, cues, sigma, noise)[0].item() == 0
        off = wan_flow_loss(Oracle(wrong_first), latents, cond, prompt, cues, sigma, noise)[0].item()
        assert off == 0 if name == "wan2.2-ti2v" else off > 0.1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, features = wan_flow_loss(model, latents, cond, prompt, cues, sigma, noise, feature_depths=(1,))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert features[1].shape[:2] == (2, latents.shape[2] * latents.shape[3] * latents.shape[4] // 4)
    assert model.cue_fusion[0].shared.weight.abs().sum() > 0  # the injection moved off its zero start


def test_gpu_memory_estimate_for_wan_counts_backbone_and_cue_stream():
    """benchmarks/gpu.py --estimate --backbone wan...: the real configs' counts, built on the meta device
    with diffusers' own class, plus the cue stream counted here from its shapes."""
    from diffusers import WanTransformer3DModel

    from ..scripts import load_benchmark

    gpu = load_benchmark("gpu")
    for name, tokens in (("wan2.1-i2v-14b", 13 * 32 * 32), ("wan2.2-ti2v-5b", 13 * 16 * 16)):
        spec = gpu.WAN[name]["transformer"]
        with torch.device("meta"):
            backbone = sum(p.numel() for p in WanTransformer3DModel(**spec).parameters())
        dim, layers, latent = spec["num_attention_heads"] * spec["attention_head_dim"], spec["num_layers"], spec["out_channels"]
        cue = (dim * 6 * dim + 6 * dim) + layers * 6 * dim + 2 * ((latent + 1) * 4 * dim + dim)
        est = gpu.estimate(gpus=8, lora_rank=64, backbone=name)
        assert est["parameters"] == backbone + cue and est["tokens"] == tokens, name
        assert cue < 0.015 * backbone  # the shared eq-1 projection keeps the cue stream small
        rows = est["rows"]
        assert rows["train cue_only, same-ID"]["trainable"] == cue
        assert rows["train full, same-ID"]["total"] > rows["train full, same-ID, ZeRO-2 x8"]["total"]
        # UMT5-XXL's encoder: 11.4 GB in bf16 as Wan ships it (models_t5_umt5-xxl-enc-bf16.pth)
        assert 5.6e9 < est["text_encoder"] < 5.8e9
