"""train.person_loss_weight: the denoising loss weighted towards the Location Cue's cells, on both
backbones; validation losses stay the plain mean."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from directanimator.data.dataset import CachedSamples
from directanimator.model import build_codec, build_transformer
from directanimator.train.losses import Same2XObjective, make_scheduler, person_weights, velocity


def test_person_weights_weight_the_denoising_loss_by_the_location_cue(puppet_dataset, tiny_cfg):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_transformer(cfg.model, build_codec(cfg.model).latent_channels).eval()
    sched = make_scheduler()
    batch = {k: v[None] for k, v in CachedSamples(puppet_dataset, cfg, "same_id")[0].items()
             if isinstance(v, torch.Tensor)}
    assert person_weights(batch["body_mask"], 0.0) is None
    plain, weighted = Same2XObjective(sched), Same2XObjective(sched, person_loss_weight=4.0)
    a = plain.inputs(model, batch, torch.Generator().manual_seed(1))
    b = weighted.inputs(model, batch, torch.Generator().manual_seed(1))
    assert a["loss_weights"] is None and torch.equal(a["x"], b["x"]) and torch.equal(a["t"], b["t"])
    mask = batch["body_mask"]
    assert 0 < float(mask.mean()) < 1  # the person covers some cells, not all
    torch.testing.assert_close(b["loss_weights"], 1 + 4.0 * mask)
    enc = torch.zeros(1, cfg.model.transformer.max_text_seq_length, cfg.model.transformer.text_embed_dim)
    with torch.no_grad():
        loss_a, _ = plain(model, encoder_hidden_states=enc, **a)
        loss_b, _ = weighted(model, encoder_hidden_states=enc, **b)
        v = model(b["x"], enc, b["t"], **b["cues"]).sample
    err = (v - velocity(b["latents"], b["noise"], b["t"], sched)).square()
    w = (1 + 4.0 * mask).expand_as(err)
    torch.testing.assert_close(loss_b, (err * w).sum() / w.sum())
    torch.testing.assert_close(loss_a, err.mean())
    assert abs(loss_b.item() - loss_a.item()) > 1e-4
    nobody = dict(batch, body_mask=torch.zeros_like(mask))  # no person: every weight 1, the plain mean
    c = weighted.inputs(model, nobody, torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(weighted(model, encoder_hidden_states=enc, **c)[0], loss_a)


def test_the_wan_loss_weights_the_window_and_leaves_the_reference_frame_out():
    from directanimator.model.wan_sampling import WanCondition, flow_input, wan_flow_loss

    class Echo(torch.nn.Module):  # predicts its input: the loss is a function of the inputs alone
        config = SimpleNamespace(patch_size=(1, 2, 2))

        def forward(self, hidden_states, **kw):
            return SimpleNamespace(sample=hidden_states, features=None)

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 6, 4, 4, 4, generator=g), torch.randn(2, 6, 4, 4, 4, generator=g)
    mask = torch.ones(1, 1, 4, 4, 4)
    mask[:, :, 0] = 0  # ti2v: the reference's frame is not scored
    cond = WanCondition(latents=x0 * (1 - mask), mask=mask, form="ti2v")
    sigma = torch.tensor([0.5, 0.5])
    weights = 1 + 3.0 * (torch.rand(2, 1, 4, 4, 4, generator=g) > 0.5).float()
    plain, _ = wan_flow_loss(Echo(), x0, cond, torch.zeros(2, 3, 8), {}, sigma, noise, dtype=torch.float32)
    ones, _ = wan_flow_loss(Echo(), x0, cond, torch.zeros(2, 3, 8), {}, sigma, noise, dtype=torch.float32,
                            weights=torch.ones_like(weights))
    torch.testing.assert_close(ones, plain)
    loss, _ = wan_flow_loss(Echo(), x0, cond, torch.zeros(2, 3, 8), {}, sigma, noise, dtype=torch.float32,
                            weights=weights)
    h, _ = flow_input(Echo(), x0, cond, sigma, noise)  # the manual loss from the same flow input
    err = (h - (noise - x0)).square()
    w = (weights * mask).expand_as(err)
    torch.testing.assert_close(loss, (err * w).sum() / w.sum())
    moved = noise.clone()
    moved[:, :, 0] += 5.0  # the reference's frame: out of the loss, weighted or not
    torch.testing.assert_close(wan_flow_loss(Echo(), x0, cond, torch.zeros(2, 3, 8), {}, sigma, moved,
                                             dtype=torch.float32, weights=weights)[0], loss)


def test_validation_scores_the_plain_loss_whatever_the_training_weight(same_id_run, puppet_dataset, tiny_cfg,
                                                                      tmp_path):
    """Two runs from the same start, one with the person weight: the step-0 validation rows (the same
    weights) are equal, while the first training losses differ."""
    from directanimator.config import load_config
    from directanimator.errors import InputError
    from directanimator.train.trainer import train

    logs = {}
    for w in (0.0, 4.0):
        cfg = tiny_cfg(max_steps=1, init_from=str(same_id_run), person_loss_weight=w)
        cfg.data.dataset = str(puppet_dataset)
        v = cfg.train.validation
        v.dataset, v.every, v.sample_steps = str(puppet_dataset), 1, 2
        out = tmp_path / f"w{w:g}"
        train(cfg, out, progress=False)
        logs[w] = ([json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()][1],
                   json.loads((out / "log.jsonl").read_text().splitlines()[0]))
    (val0, log0), (val4, log4) = logs[0.0], logs[4.0]
    assert val0["step"] == val4["step"] == 0 and val0["val_loss"] == val4["val_loss"]
    assert log0["loss"] != log4["loss"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  person_loss_weight: -1.0\n")
    with pytest.raises(InputError, match="train.person_loss_weight"):
        load_config(bad)
