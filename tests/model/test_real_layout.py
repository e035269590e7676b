"""The real-size path on a tiny folder in CogVideoX1.5-5B-I2V's exact layout (tests/cogvideox_folder.py):
parity with diffusers' own image-to-video pipeline, seeds, the tokenizer, training and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from directanimator.data.format import read_manifest, read_pseudo_manifest
from directanimator.video import iter_frames

from ..cogvideox_folder import LATENT_CHANNELS, TEXT_LENGTH, make_tiny_cogvideox15_i2v
from ..conftest import ROOT
from ..media import puppet_driving_and_photo, write_clip

SIZE, FRAMES, PROMPT = 32, 9, "a person walks"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_tiny_cogvideox15_i2v(tmp_path_factory.mktemp("models") / "CogVideoX1.5-5B-I2V")


def real_config(folder: Path, injection: str = "none"):
    """configs/cogvideox1.5-5b-i2v.yaml pointed at the tiny folder, at 32 px and 9 frames."""
    from directanimator.config import load_config

    cfg = load_config("configs/cogvideox1.5-5b-i2v.yaml")
    cfg.cues.size = SIZE
    m = cfg.model
    m.pretrained, m.injection, m.frames, m.size = str(folder), injection, FRAMES, SIZE
    m.gradient_checkpointing = False
    m.codec.tiling = False
    m.text.encoder_path, m.text.prompt = str(folder), PROMPT
    cfg.inference.steps, cfg.inference.scheduler, cfg.inference.keep_background = 3, "ddim", False
    return cfg


def our_pipeline(folder: Path, cfg, dtype=torch.float32):
    from directanimator.model import build_codec, build_text_encoder, build_transformer
    from directanimator.pipeline import DirectAnimatorPipeline, make_inference_scheduler

    transformer = build_transformer(cfg.model, LATENT_CHANNELS).to(dtype)
    return DirectAnimatorPipeline(transformer, make_inference_scheduler("ddim", str(folder)),
                                  build_codec(cfg.model, dtype=dtype), build_text_encoder(cfg.model, transformer), cfg)


def driving_and_reference(tmp_path: Path):
    from directanimator.cues.face import GivenFaceBoxes
    from directanimator.cues.segment import GivenMasks
    from directanimator.synth.render import render_clip

    def half(a, interpolation=cv2.INTER_AREA):  # the renderer's smallest size is 64
        return cv2.resize(np.asarray(a), (SIZE, SIZE), interpolation=interpolation)

    clip = render_clip(905, 805, 705, FRAMES, 64)
    ref = render_clip(901, 801, 702, 1, 64)
    drv = tmp_path / "driving.mp4"
    write_clip(drv, [half(f) for f in clip.frames], fps=15, audio=False)
    given = dict(segmenter=GivenMasks([half(m.astype(np.float32)) for m in clip.masks]),
                 face_detector=GivenFaceBoxes(np.asarray(clip.face_boxes) / 2,
                                              reference_box=np.asarray(ref.face_boxes[0]) / 2),
                 reference_mask=half(ref.masks[0].astype(np.float32)))
    return half(ref.frames[0]), drv, given


def test_diffusers_loads_the_tiny_folder_as_the_real_one(folder):
    """The fixture is the real layout: diffusers' own classes load each component from it."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from safetensors import safe_open

    t = CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    assert t.config.patch_size_t == 2 and t.config.ofs_embed_dim and t.config.use_rotary_positional_embeddings
    for part, pattern in (("transformer", "diffusion_pytorch_model-*-of-*.safetensors"),
                          ("text_encoder", "model-*-of-*.safetensors")):
        shards = sorted((folder / part).glob(pattern))
        assert len(shards) > 1, part  # sharded, bf16, as the real checkpoint
        with safe_open(str(shards[0]), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}, part
    vae = AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae")
    assert vae.config.invert_scale_latents and 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert CogVideoXDDIMScheduler.from_pretrained(folder, subfolder="scheduler").config.prediction_type == "v_prediction"


@pytest.mark.slow
def test_pipeline_matches_diffusers_image_to_video_pipeline(folder, tmp_path):
    """With the cue stream off (`injection: none`) our pipeline is CogVideoX1.5 I2V: the same frames as
    diffusers' `CogVideoXImageToVideoPipeline` for the same image, prompt, seed, scheduler (DDIM) and
    steps, within one 8-bit level. This covers what the transformer-level parity tests cannot: the
    reference latent's scaling (`invert_scale_latents`), the padding latent frame in front, RoPE for
    the whole sequence, the ofs embedding, the posterior sample's seed, decoding. (DPM is left out:
    its steps draw noise, which diffusers takes from the generator the VAE posterior used and we
    from each window's own.)"""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline
    from diffusers import CogVideoXTransformer3DModel
    from PIL import Image

    cfg = real_config(folder)
    pipe = our_pipeline(folder, cfg)
    ref, drv, given = driving_and_reference(tmp_path)
    seed, steps = 4, 3
    ours = pipe(ref, drv, tmp_path / "ours.mp4", steps=steps, seed=seed, progress=False, return_frames=True,
                **given).frames
    assert ours.shape == (FRAMES, SIZE, SIZE, 3)

    theirs_pipe = CogVideoXImageToVideoPipeline(
        tokenizer=None, text_encoder=None,
        vae=AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae"),
        transformer=CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer",
                                                                torch_dtype=torch.float32),
        scheduler=CogVideoXDDIMScheduler.from_pretrained(folder, subfolder="scheduler"))
    theirs_pipe.set_progress_bar_config(disable=True)
    prompt_embeds = pipe.text_encoder([PROMPT])
    # our window's initial noise (pipeline/pipeline.py: generator seed * 1_000_003 + window), one padding frame
    noise = torch.randn((1, 4, LATENT_CHANNELS, SIZE // 8, SIZE // 8),
                        generator=torch.Generator().manual_seed(seed * 1_000_003))
    theirs = theirs_pipe(image=Image.fromarray(ref), prompt_embeds=prompt_embeds, guidance_scale=1.0,
                         num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=steps, latents=noise,
                         generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
    theirs = np.round(np.asarray(theirs) * 255.0)
    assert theirs.shape == ours.shape
    diff = np.abs(theirs - ours.astype(np.float64))
    assert diff.max() <= 1.0, f"max difference {diff.max()} levels"
    assert theirs.std() > 5  # a picture, not a constant


def test_same_seed_same_video_with_the_real_vae(folder, tmp_path):
    """The VAE posterior is sampled from the seed's own generator: same seed, same frames; another
    seed, other frames (the global RNG gave a 214-level difference between two runs)."""
    pipe = our_pipeline(folder, real_config(folder))
    ref, drv, given = driving_and_reference(tmp_path)

    def run(seed):
        torch.manual_seed(seed + 100)  # the global RNG must not matter
        return pipe(ref, drv, tmp_path / "x.mp4", steps=2, seed=seed, progress=False, return_frames=True,
                    **given).frames

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.fixture(scope="module")
def real_world(folder, tmp_path_factory):
    """A small puppet world with pseudo clips and caches made by the tiny folder's VAE (latents of 32 px)."""
    from directanimator.data.preprocess import preprocess
    from directanimator.synth.world import build_world
    from directanimator.train.pseudo import make_pseudo

    root = tmp_path_factory.mktemp("real_puppets") / "world"
    build_world(root, identities=4, motions=4, clips=4, frames=FRAMES, size=64, seed=2, progress=False)
    cfg = keep_every_pseudo_clip(train_config(folder, root))
    make_pseudo(root, cfg, progress=False)
    report = preprocess(root, cfg, progress=False)
    assert report["failed"] == 0 and report["built"] > 0
    return root


def keep_every_pseudo_clip(cfg):
    """One pseudo clip per source clip and the filter off: these runs are about the model path, not
    the filter (a handful of clips would otherwise all be dropped)."""
    cfg.pseudo.min_per_clip = cfg.pseudo.max_per_clip = 1
    f = cfg.pseudo.filter
    f.min_mask_iou = f.min_pose_consistency = f.min_face_presence = 0.0
    f.max_flicker = f.max_pose_jitter = 1e9
    f.max_identity_leak = 1.0
    return cfg


def train_config(folder: Path, world: Path | None = None, stage: str = "same_id", teacher: Path | None = None,
                 max_steps: int = 4, trainable: str = "full"):
    cfg = real_config(folder, injection="cuefusion")
    t = cfg.train
    t.trainable, t.lora.rank, t.lora.alpha = trainable, 4, 4.0
    t.stage, t.teacher, t.max_steps = stage, str(teacher) if teacher else None, max_steps
    t.batch_size, t.warmup_steps, t.checkpoint_every, t.keep_last, t.log_every = 2, 1, 2, 3, 1
    t.lr, t.s2x.depth = 1e-3, 1
    cfg.data.dataset = str(world) if world else None
    return cfg


def read_losses(run: Path) -> list[tuple[int, float]]:
    import json

    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def expected_trainable_count(folder: Path, trainable: str) -> int:
    """Counted here from the tiny folder's sizes, independently of model/adapters.py: the cue modules
    (absent from the checkpoint), plus rank x (in + out) per attention projection for LoRA rank 4."""
    from directanimator.model import CueFusionTransformer3D

    model = CueFusionTransformer3D.from_cogvideox(folder, injection="cuefusion")
    total = sum(p.numel() for p in model.parameters())
    cue = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("cue_embed.", "cue_fusion.")))
    if trainable == "full":
        return total
    if trainable == "cue_only":
        return cue
    width = 2 * 16  # heads x head dim of tests/cogvideox_folder.py
    return cue + 2 * 4 * 4 * (width + width)  # 2 blocks x (q, k, v, out) x rank 4 x (in + out)


@pytest.mark.slow
@pytest.mark.parametrize("trainable", ["full", "lora", "cue_only"])
def test_both_stages_train_and_resume_on_the_real_layout(folder, real_world, tmp_path, trainable, cli_here):
    """Both stages from the pretrained folder (its transformer with cue modules added, its VAE's
    latents with the padding latent frame of patch_size_t 2, its T5), for each `train.trainable`
    (trained parameter counts checked against a count made here): losses finite, the cross-ID teacher
    untouched; a run stopped at a checkpoint and resumed logs the same losses, bit for bit, as one
    that ran straight through; the run animates from the command line (in this process), each mode with
    one way of joining windows, both ways across the three modes (in bf16 each call took 30-40 s on a CPU
    without AVX-512, whose bf16 matrix products run on a generic loop)."""
    from directanimator.model.loading import latest_checkpoint
    from directanimator.train.trainer import train

    want = expected_trainable_count(folder, trainable)
    same = tmp_path / "same_id"
    summary = train(train_config(folder, real_world, max_steps=4, trainable=trainable), same, progress=False)
    assert summary["trainable_parameters"] == want
    losses = read_losses(same)
    assert [s for s, _ in losses] == [1, 2, 3, 4] and all(np.isfinite(v) for _, v in losses)
    cross = tmp_path / "cross_id"
    summary = train(train_config(folder, real_world, "cross_id", teacher=same, max_steps=4, trainable=trainable),
                    cross, progress=False)
    assert summary["trainable_parameters"] == want
    assert len(read_losses(cross)) == 4 and latest_checkpoint(cross) is not None
    # stopped after its step-2 checkpoint, resumed to step 4
    stopped = tmp_path / "stopped"
    train(train_config(folder, real_world, max_steps=2, trainable=trainable), stopped, progress=False)
    train(train_config(folder, real_world, max_steps=4, trainable=trainable), stopped, progress=False, resume=True)
    assert read_losses(stopped) == losses
    # the trained run animates from the command line in bf16 (17 frames: 3 windows of 9; latent fusion
    # gives each window its own padding latent)
    from directanimator.video import iter_frames

    drv, photo = puppet_driving_and_photo(tmp_path)
    fusion = {"full": "pixel", "lora": "latent", "cue_only": "pixel"}[trainable]
    out = tmp_path / f"{fusion}.mp4"
    r = cli_here("animate", "--reference", photo, "--driving", drv, "--out", out, "--checkpoint", cross,
                 "--device", "cpu", "--dtype", "bfloat16", "--steps", "2", "--window-fusion", fusion, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(iter_frames(out))) == 17


def test_model_offload_gives_the_same_frames_and_keeps_one_model_on_the_device(folder, tmp_path):
    """`--memory model_offload`: the same frames as without it; the VAE and the transformer take turns
    on the device, each brought there only after the other went back to CPU memory (the hooks' log:
    on this CPU-only machine the moves themselves change nothing)."""
    ref, drv, given = driving_and_reference(tmp_path)
    plain = our_pipeline(folder, real_config(folder))
    want = plain(ref, drv, tmp_path / "a.mp4", steps=2, seed=3, progress=False, return_frames=True, **given).frames
    pipe = our_pipeline(folder, real_config(folder))
    assert pipe.apply_memory_option("model_offload") == "model_offload"
    got = pipe(ref, drv, tmp_path / "b.mp4", steps=2, seed=3, progress=False, return_frames=True, **given).frames
    assert np.array_equal(got, want)
    log = pipe.model_offload.log  # models: 0 = transformer, 1 = VAE
    assert log[0] == ("onload", 1)  # the VAE runs first (cues, reference), then the transformer, then the VAE
    assert ("onload", 0) in log and log[-1] == ("onload", 1)
    for k, (event, i) in enumerate(log[1:], 1):  # every onload after the first follows the other's offload
        if event == "onload":
            assert log[k - 1] == ("offload", 1 - i), log


@pytest.mark.slow
def test_a_clips_caption_is_its_text_embedding_in_the_cache_and_in_training(folder, tmp_path, monkeypatch):
    """preprocess encodes each clip's caption with the folder's T5 into the clip's cache entry; a new
    caption rebuilds that entry alone; training feeds the batch's captions to the model instead of the
    fixed prompt."""
    from directanimator.data.dataset import CachedSamples
    from directanimator.data.format import clip_dir, read_manifest
    from directanimator.data.preprocess import preprocess
    from directanimator.model.text import T5PromptEncoder
    from directanimator.synth.world import build_world
    from directanimator.train import losses
    from directanimator.train.trainer import train

    world = tmp_path / "world"
    build_world(world, identities=3, motions=3, clips=3, frames=FRAMES, size=64, seed=4, progress=False)
    clips = [r.clip_id for r in read_manifest(world) if r.split == "train" and r.role == "clip"]
    captions = {c: f"a puppet number {i} in a park" for i, c in enumerate(clips)}
    for c, text in captions.items():
        (clip_dir(world, c) / "caption.txt").write_text(text + "\n")
    cfg = train_config(folder, world, max_steps=1)
    assert preprocess(world, cfg, progress=False)["built"] == len(clips)
    t5 = T5PromptEncoder(folder, TEXT_LENGTH)
    data = CachedSamples(world, cfg, "same_id")
    assert data.captions
    embeds = {c: t5([captions[c]])[0] for c in clips}
    fixed = t5([cfg.model.text.prompt])[0]
    for source, _, w in data.items[:4]:
        got = data[data.items.index((source, None, w))]["prompt_embeds"]
        assert torch.allclose(got, embeds[source.stem], atol=1e-2) and not torch.allclose(got, fixed, atol=1e-2)
    (clip_dir(world, clips[0]) / "caption.txt").write_text("a puppet in a red coat on a beach\n")
    report = preprocess(world, cfg, progress=False)
    assert (report["built"], report["kept"]) == (1, len(clips) - 1)
    first = next(i for i, (s, _, _) in enumerate(CachedSamples(world, cfg, "same_id").items) if s.stem == clips[0])
    new = CachedSamples(world, cfg, "same_id")[first]["prompt_embeds"]
    assert torch.allclose(new, t5(["a puppet in a red coat on a beach"])[0], atol=1e-2)
    seen = []
    real_call = losses.Same2XObjective.__call__

    def spy(self, student, **kwargs):
        seen.append(kwargs["encoder_hidden_states"].detach().float().cpu())
        return real_call(self, student, **kwargs)

    monkeypatch.setattr(losses.Same2XObjective, "__call__", spy)
    train(cfg, tmp_path / "run", progress=False)
    rows = [e for batch in seen for e in batch]
    assert rows and all(not torch.allclose(e, fixed, atol=1e-2) for e in rows)
    allowed = [t5([(clip_dir(world, c) / "caption.txt").read_text().strip()])[0] for c in clips]
    assert all(any(torch.allclose(e, a, atol=1e-2) for a in allowed) for e in rows)


def test_the_prompt_reaches_the_model(folder, tmp_path):
    """animate's prompt (--prompt, or the reference's caption with --caption-model) changes the video
    of a model with a text encoder; the config's prompt is the default."""
    cfg = real_config(folder)
    pipe = our_pipeline(folder, cfg)
    ref, drv, given = driving_and_reference(tmp_path)

    def run(name, **kw):
        return pipe(ref, drv, tmp_path / f"{name}.mp4", steps=2, seed=1, progress=False, return_frames=True,
                    **given, **kw).frames

    default = run("default")
    assert np.array_equal(run("same", prompt=PROMPT), default)
    assert not np.array_equal(run("other", prompt="a dancer in a yellow dress on a stage"), default)


def repainted(data: Path, clip, folder: Path) -> Path:
    """`clip` with its colour channels swapped: the same motion by a differently coloured person, as an
    animator's pseudo clip would show it."""
    from directanimator.video import VideoWriter

    frames = list(iter_frames(data / "clips" / clip.clip_id / "video.mp4"))
    out = folder / "animator" / f"{clip.clip_id}.mp4"
    out.parent.mkdir(exist_ok=True)
    with VideoWriter(out, clip.fps, frames[0].shape[1], frames[0].shape[0], crf=18) as w:
        for f in frames:
            w.write(np.ascontiguousarray(f[..., ::-1]))
    return out


@pytest.mark.slow
def test_own_videos_ingest_caption_preprocess_train_benchmark(folder, tmp_path, cli_here):
    """The chain a user with their own videos runs, from the command line, on real clips at tiny size:
    ingest -> caption (tiny Qwen2-VL) -> preprocess (the tiny CogVideoX1.5 folder's VAE and T5) ->
    pseudo driving clips of the training and test clips (an external animator's) -> preprocess -> the
    same-ID and the cross-ID stage (a few steps each) -> benchmark on the test split, self-driven and
    cross-ID. (A model trained for two steps draws no person, so its own pseudo clips could not be
    preprocessed; the bootstrap generator has its own test in tests/train.)"""
    import yaml

    from directanimator.config import dump_config
    from directanimator.video import save_image

    from ..qwen2vl_folder import make_tiny_qwen2_vl

    videos = tmp_path / "videos"
    walk = list(iter_frames(ROOT / "directanimator" / "assets" / "walk.mp4"))
    for name, frames in (("a", walk), ("b", walk[::-1]), ("c", walk[5:] + walk[:5])):
        (videos / name).mkdir(parents=True)
        for i, f in enumerate(frames):
            save_image(videos / name / f"{i:04d}.png", f)
    data = tmp_path / "data"
    r = cli_here("ingest", videos, "--out", data, "--min-seconds", "1", "--max-seconds", "2", "--test-fraction", "0.3",
                 "--quiet")
    assert r.returncode == 0 and "3 clips from 3 sources (2 train, 1 test)" in r.stdout, r.stdout + r.stderr
    r = cli_here("caption", data, "--model", make_tiny_qwen2_vl(tmp_path / "qwen"), "--quiet")
    assert r.returncode == 0 and "3 new" in r.stdout, r.stderr
    cfg = keep_every_pseudo_clip(train_config(folder, data, max_steps=2))
    config = tmp_path / "real.yaml"
    config.write_text(dump_config(cfg))
    clips = read_manifest(data)
    external = tmp_path / "animator.jsonl"  # another animator's pseudo clips: here each clip repainted
    external.write_text("".join(json.dumps({"source_clip": c.clip_id, "video": str(repainted(data, c, tmp_path))})
                                + "\n" for c in clips))
    r = cli_here("pseudo", "--dataset", data, "--config", config, "--generator", "external", "--manifest", external,
                 "--splits", "train", "test", "--quiet")
    assert r.returncode == 0 and '"pseudo_clips": 3' in r.stdout, r.stdout + r.stderr
    test_clip = next(x.clip_id for x in clips if x.split == "test")
    assert [x["source_clip"] for x in read_pseudo_manifest(data, split="test")] == [test_clip]
    assert len(read_pseudo_manifest(data, split="train")) == 2
    r = cli_here("preprocess", "--dataset", data, "--config", config, "--quiet")
    assert r.returncode == 0 and '"built": 2' in r.stdout and '"pseudo_built": 2' in r.stdout, r.stdout + r.stderr
    r = cli_here("train", "--config", config, "--dataset", data, "--out", tmp_path / "run", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli_here("train", "--config", config, "--dataset", data, "--stage", "cross_id", "--teacher", tmp_path / "run",
                 "--out", tmp_path / "cross", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli_here("benchmark", data, "--checkpoint", tmp_path / "cross", "--out", tmp_path / "bench", "--steps", "2",
                 "--no-face", "--cross-id", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert [p["clips"] for p in report["protocols"]] == [1, 1]
    answers = {"model", "reference held still"}
    for protocol, expected in zip(report["protocols"], (answers, answers | {"driving video pasted"})):
        rows = protocol["rows"]
        assert set(rows) == expected
        assert all(0 < rows[k]["summary"]["SSIM"] < 1 for k in rows)
    for name in ("self-driving", "cross-ID"):
        assert len(list((tmp_path / "bench" / name / "generated").glob("*.mp4"))) == 1, name
    assert "| reference held still |" in (tmp_path / "bench" / "benchmark.md").read_text()
    assert yaml.safe_load(config.read_text())["model"]["text"]["use_captions"] is True
