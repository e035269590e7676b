"""The decision and the record of experiments/continue_demo.py on hand-made validation rows."""

from __future__ import annotations

import pytest

from ..scripts import load_experiment


def rows(*scores):
    return [{"step": 0, "trivial_answers": {}}] + [
        {"step": s, "val_moving_psnr": m, "val_person_psnr": p} for s, m, p in scores]


def test_a_run_is_installed_only_when_its_best_beats_the_start():
    cd = load_experiment("continue_demo")
    assert cd.decide(rows((0, 17.0, 16.5), (500, 17.2, 16.6), (1000, 17.1, 16.7)))["beats"]
    best = cd.decide(rows((0, 17.0, 16.5), (500, 17.2, 16.6)))["best"]
    assert best["step"] == 500
    assert not cd.decide(rows((0, 17.0, 16.5), (500, 17.03, 16.6)))["beats"]  # inside the margin
    assert not cd.decide(rows((0, 17.0, 16.5), (500, 17.3, 16.4)))["beats"]  # loses person PSNR
    assert not cd.decide(rows((0, 17.5, 16.5), (500, 17.3, 16.6)))["beats"]  # the start stays best
    with pytest.raises(SystemExit, match="no validation row at step 0"):
        cd.decide(rows((500, 17.3, 16.6)))


def test_benchmark_rows_accumulate_in_one_table():
    cd = load_experiment("continue_demo")
    verdict = cd.decide(rows((0, 17.0, 16.5), (500, 17.2, 16.6)))
    text = "# Benchmarks\n\n## Other\n\nkept\n"
    once = cd.add_benchmark_row(text, cd.benchmark_row(6000, 1.5, verdict, True))
    twice = cd.add_benchmark_row(once, cd.benchmark_row(3000, 0.7, verdict, False, "sampler timesteps 0.5"))
    assert twice.startswith(text.rstrip("\n")) and twice.count(cd.TABLE) == 1
    table = [ln for ln in twice.split(cd.TABLE)[1].splitlines() if ln.startswith("| ")]
    assert table[1].startswith("| 6,000 | 1.50 | 17.00 -> 17.20 (step 500)") and table[1].endswith("| yes |")
    assert table[2].startswith("| 3,000 (sampler timesteps 0.5) | 0.70 |") and table[2].endswith("| no |")


def test_the_run_config_continues_the_shipped_model_as_asked(tmp_path):
    """The config continues the embedded model's own config in the cross-ID stage without a teacher,
    with the asked LR, warm-up and person weight, validated on the given world; it loads."""
    from argparse import Namespace

    from directanimator.config import load_config

    cd = load_experiment("continue_demo")
    args = Namespace(lr=3e-4, warmup=20, person_loss_weight=4.0, sampler_timesteps=0.5)
    cfg = load_config(cd.run_config(tmp_path / "work", tmp_path / "world", args))
    t = cfg.train
    assert (t.stage, t.init_from, t.teacher, t.s2x.weight) == ("cross_id", "embedded", None, 0.0)
    assert (t.lr, t.warmup_steps, t.person_loss_weight, t.sampler_timesteps) == (3e-4, 20, 4.0, 0.5)
    assert cd.recipe(args) == "person loss weight 4, sampler timesteps 0.5"
    assert cd.recipe(Namespace(person_loss_weight=0.0, sampler_timesteps=0.0)) == ""
    assert t.validation.dataset == cfg.data.dataset == str(tmp_path / "world")
    assert cfg.model.transformer.num_attention_heads == 8  # the shipped 4 x 256 model's own config
