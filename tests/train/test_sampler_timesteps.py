"""train.sampler_timesteps: a share of the training samples at the noise levels the inference sampler
visits; 0 leaves the uniform draw exactly as it was."""

from __future__ import annotations

import pytest
import torch

from directanimator.config import load_config
from directanimator.errors import InputError
from directanimator.train.losses import make_objective, make_scheduler, sample_timesteps, sampler_timesteps


def test_the_share_of_samples_at_the_samplers_timesteps():
    sched = make_scheduler()
    focus = torch.tensor([999, 499])
    plain = sample_timesteps(4096, sched, torch.Generator().manual_seed(0))
    off = sample_timesteps(4096, sched, torch.Generator().manual_seed(0), focus, 0.0)
    assert torch.equal(plain, off)  # share 0: the uniform draw, bit for bit
    g = torch.Generator().manual_seed(0)
    mixed = sample_timesteps(4096, sched, g, focus, 0.75)
    at = torch.isin(mixed, focus)
    # 75% drawn from the focus, plus the uniform draw's own rare hits (2 of 1000 values)
    assert 0.72 < float(at.float().mean()) < 0.78
    assert torch.equal(mixed[~at], plain[~at])  # the others keep their uniform timestep
    assert abs(float((mixed == 999).float().mean()) - float((mixed == 499).float().mean())) < 0.05
    assert torch.isin(sample_timesteps(64, sched, g, focus, 1.0), focus).all()


def test_the_objective_trains_at_the_timesteps_of_the_configs_sampler(tmp_path, tiny_cfg, puppet_dataset):
    from directanimator.data.dataset import CachedSamples
    from directanimator.model import build_codec, build_transformer

    cfg = tiny_cfg()
    cfg.inference.scheduler, cfg.inference.steps = "dpm", 2
    assert sampler_timesteps(cfg).tolist() == [999, 499]
    cfg.inference.scheduler, cfg.inference.steps = "ddim", 4
    assert sampler_timesteps(cfg).tolist() == [999, 749, 499, 249]
    assert make_objective(cfg, model=torch.nn.Linear(1, 1)).focus_timesteps is None
    cfg.train.sampler_timesteps = 0.5
    objective = make_objective(cfg, model=torch.nn.Linear(1, 1))
    assert objective.focus_timesteps.tolist() == [999, 749, 499, 249] and objective.focus_share == 0.5
    cfg.train.sampler_timesteps = 1.0  # every sample at one of the sampler's timesteps
    model = build_transformer(cfg.model, build_codec(cfg.model).latent_channels)
    batch = {k: torch.stack([v, v]) for k, v in CachedSamples(puppet_dataset, cfg, "same_id")[0].items()
             if isinstance(v, torch.Tensor)}
    ts = torch.cat([make_objective(cfg, model).inputs(model, batch, torch.Generator().manual_seed(k))["t"]
                    for k in range(8)])
    assert torch.isin(ts, torch.tensor([999, 749, 499, 249])).all() and len(set(ts.tolist())) > 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  sampler_timesteps: 1.5\n")
    with pytest.raises(InputError, match="train.sampler_timesteps"):
        load_config(bad)


def test_a_wan_run_refuses_it(tiny_cfg):
    class WanCueFusionTransformer3D(torch.nn.Module):  # what make_objective recognises a Wan model by
        pass

    cfg = tiny_cfg(sampler_timesteps=0.5)
    with pytest.raises(InputError, match="train.sampler_timesteps is for the CogVideoX backbone"):
        make_objective(cfg, WanCueFusionTransformer3D())
