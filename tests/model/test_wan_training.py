"""The Wan backbone through the whole system on tiny folders in the exact layouts of Wan2.2-TI2V-5B
and Wan2.1-I2V-14B (tests/wan_folder.py): `model.backbone: wan` from each checkpoint's config, the
caches made by its VAE (and for I2V the reference's channel condition and CLIP tokens), both Same2X
stages (full, LoRA, cue-only), validation, a stopped run resumed on the same loss curve, `animate`
and the web page's service from the trained run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ..media import puppet_driving_and_photo
from ..wan_folder import make_tiny_wan_folder

SIZE, FRAMES, PROMPT = 64, 9, "a person dances"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_tiny_wan_folder(tmp_path_factory.mktemp("models") / "Wan2.2-TI2V-5B", "wan2.2-ti2v")


TI2V, I2V = "configs/wan2.2-ti2v-5b.yaml", "configs/wan2.1-i2v-14b.yaml"


def wan_config(folder: Path, world: Path | None = None, stage: str = "same_id", teacher: Path | None = None,
               max_steps: int = 4, trainable: str = "full", config: str = TI2V):
    """The checkpoint's config pointed at the tiny folder, at 64 px and 9 frames, quick training in
    float32."""
    from directanimator.config import load_config

    cfg = load_config(config)
    cfg.cues.size = SIZE
    m = cfg.model
    m.pretrained, m.frames, m.size, m.gradient_checkpointing = str(folder), FRAMES, SIZE, False
    m.text.encoder_path, m.text.prompt = str(folder), PROMPT
    cfg.inference.steps, cfg.inference.keep_background = 3, False
    t = cfg.train
    t.trainable, t.lora.rank, t.lora.alpha = trainable, 4, 4.0
    t.mixed_precision, t.frozen_dtype = "no", "float32"
    t.stage, t.teacher, t.max_steps = stage, str(teacher) if teacher else None, max_steps
    t.batch_size, t.warmup_steps, t.checkpoint_every, t.keep_last, t.log_every = 2, 1, 2, 3, 1
    t.lr, t.s2x.depth = 1e-3, 1
    cfg.data.dataset = str(world) if world else None
    return cfg


@pytest.fixture(scope="module")
def wan_world(folder, tmp_path_factory):
    """A small puppet world with pseudo clips and caches made by the tiny folder's VAE."""
    from directanimator.data.preprocess import preprocess
    from directanimator.synth.world import build_world
    from directanimator.train.pseudo import make_pseudo

    from .test_real_layout import keep_every_pseudo_clip

    root = tmp_path_factory.mktemp("wan_puppets") / "world"
    build_world(root, identities=4, motions=4, clips=4, frames=FRAMES, size=SIZE, seed=2, progress=False)
    cfg = keep_every_pseudo_clip(wan_config(folder, root))
    make_pseudo(root, cfg, progress=False)
    report = preprocess(root, cfg, progress=False)
    assert report["failed"] == 0 and report["built"] > 0
    return root


def read_losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"], r["loss_s2x"]) for r in rows if "loss" in r]


def expected_trainable_count(folder: Path, trainable: str) -> int:
    """Counted here from the tiny folder's sizes, independently of model/adapters.py: the cue modules
    (absent from the checkpoint), plus rank x (in + out) per attention projection for LoRA rank 4."""
    from directanimator.model.wan import WanCueFusionTransformer3D

    model = WanCueFusionTransformer3D.from_wan(folder)
    total = sum(p.numel() for p in model.parameters())
    cue = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("cue_embed.", "cue_fusion.")))
    if trainable == "full":
        return total
    if trainable == "cue_only":
        return cue
    width = 2 * 16  # heads x head dim of tests/wan_folder.py
    # 2 blocks x (self-attention + cross-attention) x (q, k, v, out) x rank 4 x (in + out)
    return cue + 2 * 2 * 4 * 4 * (width + width)


def test_the_backbone_switch_builds_wan_and_refuses_what_does_not_fit(folder):
    from directanimator.config import load_config
    from directanimator.errors import InputError
    from directanimator.model import build_codec, build_transformer, is_wan
    from directanimator.model.codec import WanVAECodec

    cfg = wan_config(folder)
    model = build_transformer(cfg.model, 6)
    assert is_wan(model) and isinstance(build_codec(cfg.model), WanVAECodec)
    cfg.model.pretrained = None
    with pytest.raises(InputError, match="model.pretrained"):
        build_transformer(cfg.model, 6)
    bad = Path(folder).parent / "bad.yaml"
    bad.write_text("model:\n  backbone: wan\n  codec:\n    kind: pixel_shuffle\n")
    with pytest.raises(InputError, match="codec.kind wan"):
        load_config(bad)
    bad.write_text("model:\n  backbone: wan\n  injection: concat\n  codec:\n    kind: wan\n")
    with pytest.raises(InputError, match="cuefusion or none"):
        load_config(bad)


def test_the_animation_layout_puts_the_reference_in_front_clean_and_unscored(folder):
    """The window's latents follow the reference's clean frame: the transformer sees the reference
    exactly, at timestep 0, whatever the noise; the reference frame's target never reaches the loss
    (changed there, the loss is the same to the bit) while the window's frames do."""
    from directanimator.model.wan import WanCueFusionTransformer3D
    from directanimator.model.wan_sampling import (animation_condition, animation_cues, animation_target, flow_input,
                                                   wan_flow_loss)

    model = WanCueFusionTransformer3D.from_wan(folder)
    g = torch.Generator().manual_seed(0)
    ref, lat = torch.randn(2, 1, 6, 4, 4, generator=g), torch.randn(2, 3, 6, 4, 4, generator=g)
    x0, cond = animation_target(ref, lat), animation_condition(ref, 3)
    assert x0.shape == (2, 6, 4, 4, 4) and torch.equal(x0[:, :, 0], ref[:, 0])
    assert torch.equal(x0[:, :, 1:], lat.transpose(1, 2))
    noise, sigma = torch.randn(x0.shape, generator=g), torch.tensor([0.3, 0.9])
    hidden, timestep = flow_input(model, x0, cond, sigma, noise)
    assert torch.equal(hidden[:, :, 0], ref[:, 0])
    per_frame = timestep.view(2, 4, -1)  # (B, latent frames, tokens per frame)
    assert (per_frame[:, 0] == 0).all()
    assert torch.allclose(per_frame[:, 1:], (sigma * 1000).view(2, 1, 1).expand(2, 3, 4))
    cues = animation_cues({"pose_latents": torch.randn(2, 3, 6, 4, 4, generator=g),
                           "face_latents": torch.randn(2, 3, 6, 4, 4, generator=g),
                           "body_mask": torch.ones(2, 3, 1, 4, 4), "face_mask": torch.ones(2, 3, 1, 4, 4)})
    assert all(v.shape[2] == 4 and not v[:, :, 0].any() for v in cues.values())  # no cue on the reference frame
    enc = torch.randn(2, 512, 16, generator=g)
    with torch.no_grad():
        loss, _ = wan_flow_loss(model, x0, cond, enc, cues, sigma, noise)
        on_ref, on_window = noise.clone(), noise.clone()
        on_ref[:, :, 0] += 5.0
        on_window[:, :, 1] += 5.0
        assert torch.equal(wan_flow_loss(model, x0, cond, enc, cues, sigma, on_ref)[0], loss)
        assert not torch.allclose(wan_flow_loss(model, x0, cond, enc, cues, sigma, on_window)[0], loss)


@pytest.mark.slow
@pytest.mark.parametrize("trainable", ["full", "lora", "cue_only"])
def test_both_stages_train_and_resume_on_wan(folder, wan_world, tmp_path, trainable, cli_here):
    """Both stages from the tiny Wan2.2-TI2V folder (its transformer with the cue stream added, its
    VAE's latents, its UMT5), for each `train.trainable` (trained parameter counts checked against a
    count made here): losses finite, the S2X term live in the cross-ID stage; a run stopped at a
    checkpoint and resumed logs the same losses, bit for bit, as one that ran straight through; the
    run animates from the command line (17 frames: 3 windows of 9; bf16 for the LoRA run) and, for the
    cue-only run, through the web page's service with serve's --device/--dtype/--memory."""
    from directanimator.model.loading import latest_checkpoint
    from directanimator.train.trainer import train
    from directanimator.video import iter_frames

    want = expected_trainable_count(folder, trainable)
    same = tmp_path / "same_id"
    cfg = wan_config(folder, wan_world, max_steps=4, trainable=trainable)
    if trainable == "full":  # held-out validation on the Wan sampler and loss, with the trivial answers' row
        v = cfg.train.validation
        v.dataset, v.triples, v.every, v.sample_steps = str(wan_world), 2, 2, 2
    summary = train(cfg, same, progress=False)
    assert summary["trainable_parameters"] == want
    losses = read_losses(same)
    assert [s for s, _, _ in losses] == [1, 2, 3, 4] and all(np.isfinite(v) for _, v, _ in losses)
    if trainable == "full":
        rows = [json.loads(x) for x in (same / "validation.jsonl").read_text().splitlines()]
        assert "trivial_answers" in rows[0] and [r["step"] for r in rows[1:]] == [2, 4]
        assert all(np.isfinite(r["val_loss"]) and 0 < r["val_ssim"] < 1 for r in rows[1:])
        assert (same / "best" / "best.json").is_file()
    cross = tmp_path / "cross_id"
    summary = train(wan_config(folder, wan_world, "cross_id", teacher=same, max_steps=4, trainable=trainable),
                    cross, progress=False)
    assert summary["trainable_parameters"] == want
    cross_losses = read_losses(cross)
    assert len(cross_losses) == 4 and latest_checkpoint(cross) is not None
    assert all(-1.0 <= a < 0 for _, _, a in cross_losses)  # S2X: minus a mean cosine, the teacher's features live
    stopped = tmp_path / "stopped"
    train(wan_config(folder, wan_world, max_steps=2, trainable=trainable), stopped, progress=False)
    train(wan_config(folder, wan_world, max_steps=4, trainable=trainable), stopped, progress=False, resume=True)
    assert read_losses(stopped) == losses
    drv, photo = puppet_driving_and_photo(tmp_path)
    out = tmp_path / "out.mp4"
    dtype = "bfloat16" if trainable == "lora" else "float32"  # bf16 as on a GPU, the float32 modules kept
    r = cli_here("animate", "--reference", photo, "--driving", drv, "--out", out, "--checkpoint", cross,
                 "--device", "cpu", "--dtype", dtype, "--steps", "2", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(iter_frames(out))) == 17
    if trainable == "cue_only":  # the web page's service on the Wan run, with serve's --device/--dtype/--memory
        from directanimator.ui import AnimateService

        service = AnimateService(checkpoint=str(cross), workdir=tmp_path, device="cpu", dtype="bfloat16",
                                 memory="none")
        result = service.animate(str(photo), str(drv), steps=1)
        assert len(list(iter_frames(result.folder / "animation.mp4"))) == 17
        service.close()
    if trainable == "full":  # joining windows in latent space is CogVideoX's only, said in one line
        r = cli_here("animate", "--reference", photo, "--driving", drv, "--out", tmp_path / "latent.mp4",
                     "--checkpoint", cross, "--steps", "2", "--window-fusion", "latent", "--quiet")
        assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("error: window fusion latent")


@pytest.mark.slow
def test_wan21_i2v_trains_both_stages_validates_and_animates(tmp_path, cli_here):
    """The Wan2.1-I2V form through the commands: its caches hold, per window, the reference's channel
    condition (the reference then black frames, encoded) and its CLIP tokens, equal to what the
    pipeline computes from the same image; both stages train (the S2X term live), validation runs
    on its sampler, a stopped run resumes on the same losses, and `animate` runs from the run."""
    import yaml
    from safetensors import safe_open

    from directanimator.data.cache import load_clip_frames
    from directanimator.data.format import clip_dir
    from directanimator.data.preprocess import preprocess
    from directanimator.model import build_codec
    from directanimator.synth.world import build_world
    from directanimator.train.pseudo import make_pseudo
    from directanimator.train.trainer import train
    from directanimator.video import iter_frames

    from .test_real_layout import keep_every_pseudo_clip

    folder = make_tiny_wan_folder(tmp_path / "Wan2.1-I2V-14B", "wan2.1-i2v")
    world = tmp_path / "world"
    build_world(world, identities=4, motions=4, clips=4, frames=FRAMES, size=SIZE, seed=2, progress=False)
    cfg = keep_every_pseudo_clip(wan_config(folder, world, config=I2V))
    make_pseudo(world, cfg, progress=False)
    assert preprocess(world, cfg, progress=False)["failed"] == 0
    entry = sorted((world / "cache").glob("*/clips/*.safetensors"))[0]
    with safe_open(str(entry), "pt") as f:
        cond, embeds = f.get_tensor("condition_latents"), f.get_tensor("image_embeds")
        meta = yaml.safe_load(f.metadata()["meta"])
    assert cond.shape[1:] == (3, 4, 8, 8) and embeds.shape[0] == cond.shape[0]
    assert meta["reference_keys"] == ["condition_latents", "image_embeds"]
    same = tmp_path / "same_id"
    v = cfg.train.validation
    v.dataset, v.triples, v.every, v.sample_steps = str(world), 2, 2, 2
    train(cfg, same, progress=False)
    rows = [json.loads(x) for x in (same / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows[1:]] == [2, 4] and all(np.isfinite(r["val_loss"]) for r in rows[1:])
    losses = read_losses(same)
    stopped = tmp_path / "stopped"
    train(wan_config(folder, world, max_steps=2, config=I2V), stopped, progress=False)
    train(wan_config(folder, world, max_steps=4, config=I2V), stopped, progress=False, resume=True)
    assert read_losses(stopped) == losses
    cross = tmp_path / "cross_id"
    train(wan_config(folder, world, "cross_id", teacher=same, config=I2V), cross, progress=False)
    assert all(-1.0 <= a < 0 for _, _, a in read_losses(cross))
    drv, photo = puppet_driving_and_photo(tmp_path)
    r = cli_here("animate", "--reference", photo, "--driving", drv, "--out", tmp_path / "out.mp4", "--checkpoint",
                 cross, "--device", "cpu", "--steps", "2", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(iter_frames(tmp_path / "out.mp4"))) == 17
    # the cached condition is what the pipeline's codec makes of the clip's reference image
    clip = load_clip_frames(clip_dir(world, meta["clip_id"]), SIZE)
    image = clip.reference if meta["reference_index"] < 0 else clip.frames[meta["reference_index"]]
    want = build_codec(cfg.model).reference_inputs(image)
    assert torch.allclose(cond[0].float(), want["condition_latents"][0], atol=2e-3)  # float16 cache
    assert torch.allclose(embeds[0].float(), want["image_embeds"][0], atol=2e-3)


def test_without_a_text_encoder_path_the_prompt_is_the_folders_umt5_cached(folder, tmp_path, monkeypatch):
    """model.text.encoder_path unset: the prompt's UMT5 embedding from the folder's own text encoder,
    cached on disk, equal to encoding it directly."""
    from directanimator.model import build_text_encoder, build_transformer
    from directanimator.model.text import CachedPrompt, UMT5PromptEncoder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = wan_config(folder)
    cfg.model.text.encoder_path = None
    encoder = build_text_encoder(cfg.model, build_transformer(cfg.model, 6))
    assert isinstance(encoder, CachedPrompt)
    got = encoder([PROMPT])
    want = UMT5PromptEncoder(folder)([PROMPT])
    assert got.shape == want.shape == (1, 512, 16) and torch.allclose(got, want)
    assert any((tmp_path / "cache").rglob("*.safetensors"))


def test_the_person_weight_reaches_wan_training_and_not_its_validation(folder, wan_world):
    """train.person_loss_weight on Wan: the training loss changes, the validation losses stay the plain
    mean, equal to the bit to an unweighted run's on the same weights."""
    from directanimator.data.dataset import CachedSamples
    from directanimator.model import build_codec, build_transformer
    from directanimator.train.losses import make_objective
    from directanimator.train.validation import _losses

    cfg = wan_config(folder, wan_world)
    torch.manual_seed(0)
    model = build_transformer(cfg.model, build_codec(cfg.model).latent_channels).eval()
    samples = CachedSamples(wan_world, cfg, "same_id")
    part = {k: torch.stack([samples[i][k] for i in range(2)]) for k, v in samples[0].items()
            if isinstance(v, torch.Tensor)}
    enc = torch.randn(2, 512, 16, generator=torch.Generator().manual_seed(1))
    plain = make_objective(cfg, model)
    cfg.train.person_loss_weight = 4.0
    weighted = make_objective(cfg, model)
    with torch.no_grad():
        assert _losses(model, part, enc, torch.Generator().manual_seed(2), plain) == \
            _losses(model, part, enc, torch.Generator().manual_seed(2), weighted)
        a = plain(model, enc, **plain.inputs(model, part, torch.Generator().manual_seed(3)))[0]
        b = weighted(model, enc, **weighted.inputs(model, part, torch.Generator().manual_seed(3)))[0]
    assert abs(a.item() - b.item()) > 1e-6
