"""experiments/train_vae.py: the tiny CogVideoX VAE it trains is what the project's CogVideoX codec
loads, on the DCT codec's latent grid, with unit-variance latents, and a resumed run carries its
steps and CPU time."""

from __future__ import annotations

import json

import pytest
import torch

from ..scripts import load_experiment


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from directanimator.synth.world import build_world

    root = tmp_path_factory.mktemp("vae_world") / "world"
    build_world(root, identities=2, motions=2, clips=2, frames=9, size=64, seed=4, progress=False)
    return root


def test_the_trained_vae_is_a_cogvideox_codec_on_the_toy_grid_and_resumes(world, tmp_path):
    from directanimator.model.codec import CogVideoXCodec

    tv = load_experiment("train_vae")
    out = tmp_path / "vae_run"
    args = ["--world", str(world), "--out", str(out), "--width", "8", "--batch", "1", "--frames", "9"]
    assert tv.main([*args, "--steps", "3"]) == 0
    record = json.loads((out / "train.json").read_text())
    assert record["steps"] == 3 and record["cpu_seconds"] > 0 and len(record["commands"]) == 1
    codec = CogVideoXCodec(out, slicing=False)
    assert (codec.spatial_factor, codec.temporal_factor, codec.latent_channels) == (4, 4, 16)
    video = torch.rand(1, 9, 3, 64, 64) * 2 - 1
    z = codec.encode(video, torch.Generator().manual_seed(0))
    assert z.shape == (1, 3, 16, 64 // 4, 64 // 4) and codec.decode(z).shape == video.shape
    # the scaling factor makes the training windows' latents unit-variance
    data = tv.Windows(world, 9, seed=1)
    vae = codec.vae
    means = torch.cat([vae.encode(data.batch(4)).latent_dist.mode().flatten() for _ in range(2)])
    assert abs(float(means.std()) * codec.scaling_factor - 1) < 0.25
    assert tv.main([*args, "--steps", "2", "--resume"]) == 0
    resumed = json.loads((out / "train.json").read_text())
    assert resumed["steps"] == 5 and resumed["cpu_seconds"] > record["cpu_seconds"] and len(resumed["commands"]) == 2
    assert [r["step"] for r in resumed["log"]] == [3, 5]
    assert not (out / "vae.partial").exists()


def test_a_toy_model_ships_its_vae_in_its_folder_and_animates_from_it(world, tmp_path, tiny_cfg):
    """A toy pipeline on the learned codec saves the VAE as vae/ in its folder (no local path left in
    its config), and loads and animates from that folder alone."""
    import numpy as np

    from directanimator.model import build_codec, build_text_encoder, build_transformer
    from directanimator.pipeline import DirectAnimatorPipeline, make_inference_scheduler
    from directanimator.synth.render import render_clip
    from directanimator.video import iter_frames

    from ..media import write_clip

    tv = load_experiment("train_vae")
    vae_run = tmp_path / "vae_run"
    assert tv.main(["--world", str(world), "--out", str(vae_run), "--width", "8", "--batch", "1", "--steps", "1"]) == 0
    cfg = tiny_cfg()
    cfg.model.codec.kind, cfg.model.codec.path = "cogvideox", str(vae_run)
    cfg.inference.steps, cfg.inference.keep_background = 2, False
    codec = build_codec(cfg.model)
    transformer = build_transformer(cfg.model, codec.latent_channels)
    pipe = DirectAnimatorPipeline(transformer, make_inference_scheduler("ddim"), codec,
                                  build_text_encoder(cfg.model, transformer), cfg)
    folder = tmp_path / "pipeline"
    pipe.save_pretrained(folder)
    assert (folder / "vae" / "config.json").is_file() and "path: null" in (folder / "config.yaml").read_text()
    vae_run.rename(tmp_path / "moved")  # the folder alone must do
    loaded = DirectAnimatorPipeline.from_pretrained(folder)
    assert loaded.codec.scaling_factor == codec.scaling_factor
    clip, ref = render_clip(906, 806, 706, 9, 64), render_clip(901, 801, 702, 1, 64)
    drv = tmp_path / "driving.mp4"
    write_clip(drv, list(clip.frames), fps=15, audio=False)
    result = loaded(ref.frames[0], drv, tmp_path / "out.mp4", progress=False)
    frames = np.stack(list(iter_frames(tmp_path / "out.mp4")))
    assert result.num_frames == 9 and frames.shape == (9, 64, 64, 3)
