"""experiments/s2x_probe.py on a tiny cross-ID run: the S2X term it measures is the training's, and
its gradient vanishes where the student already matches the teacher."""

from __future__ import annotations

import json

import pytest
import torch

from ..scripts import load_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory, puppet_dataset, same_id_run, tiny_cfg):
    from directanimator.train.trainer import train

    cfg = tiny_cfg(stage="cross_id", teacher=str(same_id_run), max_steps=3)
    cfg.data.dataset = str(puppet_dataset)
    folder = tmp_path_factory.mktemp("s2x_probe")
    train(cfg, folder / "cross_id", progress=False)
    return folder


def test_the_probe_figures_per_block_and_its_report(run, tmp_path):
    sp = load_experiment("s2x_probe")
    result = sp.probe(run, batches=1, seed=0)
    layers = result["layers"]
    assert list(result["by_depth"]) == list(range(1, layers + 1)) and 1 <= result["trained_depth"] <= layers
    for r in result["by_depth"].values():
        assert -1 <= r["pseudo_vs_real"] <= 1 + 1e-6 and -1 <= r["s2x_end"] <= 1 + 1e-6
        assert 0 <= r["cue_share"] <= 2 and r["grad_start"] >= 0 and r["grad_end"] >= 0
    assert all(v > 0 for v in result["cue_input_difference"].values())  # pseudo cues are not the real ones
    assert sp.main(["--run", str(run), "--batches", "1", "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "| 1 |" in text and "## What it shows" in text and json.loads((tmp_path / "r.json").read_text())["layers"] == layers


def test_the_probe_measures_the_training_s2x_term_and_its_gradient(run):
    """The probe's cosine of the teacher's and the student's tokens is minus the training objective's
    S2X loss. At the start the student is the teacher: given the teacher's own cues the S2X cosine is
    1, its maximum, and its gradient 0; given other cues it pulls."""
    from directanimator.config import load_config
    from directanimator.data.dataset import CachedSamples
    from directanimator.model import build_text_encoder
    from directanimator.model.loading import load_transformer
    from directanimator.train.losses import make_objective

    sp = load_experiment("s2x_probe")
    cfg = load_config(run / "cross_id" / "config.yaml")
    teacher = load_transformer(cfg.train.teacher).float().eval().requires_grad_(False)
    student = load_transformer(cfg.train.teacher).float().train()
    data = CachedSamples(cfg.data.dataset, cfg, "cross_id")
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    objective = make_objective(cfg, student, teacher, depth=1)
    objective.cue_dropout = 0.0
    inputs = objective.inputs(student, batch, torch.Generator().manual_seed(0))
    enc = build_text_encoder(cfg.model, teacher)([cfg.model.text.prompt] * 2, device="cpu")
    pulled = sp.gradient_ratio(objective, student, inputs, enc, 1, 0.5)
    same = dict(inputs, cues=inputs["teacher_cues"])
    assert sp.gradient_ratio(objective, student, same, enc, 1, 0.5) < 1e-3 * max(pulled, 1e-3)
    assert pulled > 0
    h = sp.features(teacher, inputs["x"], enc, inputs["t"], inputs["teacher_cues"], (1,))[1]
    assert sp.cos(h, h) == pytest.approx(1.0, abs=1e-5)
    trained = load_transformer(run / "cross_id").float()
    objective.depth = 1
    _, loss_a = objective(trained, encoder_hidden_states=enc, **inputs)
    h_s = sp.features(trained, inputs["x"], enc, inputs["t"], inputs["cues"], (1,))[1]
    assert sp.cos(h, h_s) == pytest.approx(-float(loss_a.detach()), abs=1e-5) and sp.cos(h, h_s) < 1 - 1e-6
