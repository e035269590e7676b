"""experiments/latent_space.py: both codecs' oracles under their own names, the learned codec put into
an arm's config, the VAE's record, and the report from stand-in scores."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from ..scripts import load_experiment


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    from directanimator.synth.world import build_world

    root = tmp_path_factory.mktemp("latent_space")
    build_world(root / "world", identities=2, motions=2, clips=2, frames=9, size=64, seed=4, progress=False)
    tv = load_experiment("train_vae")
    assert tv.main(["--world", str(root / "world"), "--out", str(root / "vae"), "--width", "8", "--batch", "1",
                    "--steps", "2"]) == 0
    return root / "vae"


def test_each_codec_has_its_round_trip_and_the_dct_codec_its_coarse_oracle(vae_run):
    from directanimator.config import load_config
    from directanimator.model import build_codec
    from directanimator.synth.render import render_clip

    ls = load_experiment("latent_space")
    model = load_config(ls.ROOT / "configs" / "demo.yaml").model
    dct = build_codec(model)
    model.codec.kind, model.codec.path = "cogvideox", str(vae_run)
    codecs = {"DCT codec": dct, "learned VAE": build_codec(model)}
    truth = render_clip(906, 806, 706, 9, 64).frames
    out = load_experiment("fit_probe").oracle_answers(codecs, truth)
    assert list(out) == ["coarse oracle (every 4x4 colour average right)", "DCT codec round trip of the truth",
                         "learned VAE round trip of the truth"]
    assert all(v.shape == truth.shape and v.dtype == np.uint8 for v in out.values())
    dct_err = np.abs(out["DCT codec round trip of the truth"].astype(int) - truth).mean()
    vae_err = np.abs(out["learned VAE round trip of the truth"].astype(int) - truth).mean()
    assert dct_err < 10 < vae_err  # a VAE trained 2 steps is far from the truth; the DCT codec is close
    assert ls.encode_cpu_ms(codecs["learned VAE"], runs=1) > 0


def test_an_arm_config_takes_the_learned_codec(tmp_path):
    fp = load_experiment("fit_probe")
    learned = {"kind": "cogvideox", "path": "/somewhere/vae"}
    cfg = yaml.safe_load(fp.arm_config(tmp_path, tmp_path / "world", codec=learned).read_text())
    assert cfg["model"]["codec"] == learned
    cfg = yaml.safe_load(fp.arm_config(tmp_path, tmp_path / "world").read_text())
    assert cfg["model"]["codec"]["kind"] == "pixel_shuffle"
    ls = load_experiment("latent_space")
    assert ls.arm_folder(256, 0, False) == "clips256" and ls.arm_folder(256, 1, False) == "clips256_seed1"
    assert ls.arm_folder(256, 1, True) == "clips256_vae_seed1"


def test_the_vae_record_and_a_clear_error_without_one(vae_run, tmp_path):
    ls = load_experiment("latent_space")
    r = ls.vae_record(vae_run)
    assert r["steps"] == 2 and r["cpu_seconds"] > 0 and r["final_mse"] > 0 and len(r["commands"]) == 1
    with pytest.raises(SystemExit, match="error: .* holds no trained VAE"):
        ls.vae_record(tmp_path)


def test_the_report_from_stand_in_scores(tmp_path):
    ls = load_experiment("latent_space")

    def row(iou, person):
        return {"ssim": 0.8, "psnr": 22.0, "person_psnr": person, "moving_psnr": person + 0.5, "motion_iou": iou}

    names = ["demo recipe on the DCT codec", "demo recipe on the learned VAE"]
    held = {"trivial: reference photo held still": row(0.0, 15.0),
            "coarse oracle (every 4x4 colour average right)": row(0.55, 19.2),
            "DCT codec round trip of the truth": row(0.78, 24.0),
            "learned VAE round trip of the truth": row(0.61, 21.5),
            names[0]: row(0.25, 16.1), names[1]: row(0.31, 16.4)}
    arms = [{"name": n, "codec": c, "seed": 0, "steps": 10, "train_cpu_seconds": 60.0, "checkpoint": "x"}
            for n, c in zip(names, ls.LABELS)]
    fits = {n: {n: row(0.5 + i / 10, 20.0)} for i, n in enumerate(names)}
    vae = {"steps": 2, "cpu_seconds": 36.0, "commands": ["python experiments/train_vae.py --steps 2"],
           "final_mse": 0.1}
    args = SimpleNamespace(vae="out/vae", clips=8, seed=None, steps=10, eval_world="w", out=str(tmp_path / "r.md"))
    ls.write_report(args, vae, {"DCT codec": 1.0, "learned VAE": 20.0}, held, fits, arms)
    text = (tmp_path / "r.md").read_text()
    assert "the VAE person PSNR 21.50, motion IoU 0.610; the DCT codec 24.00, 0.780" in text
    assert "DCT codec (1 seed(s), 1.0 CPU min each): held out motion IoU 0.250, person PSNR 16.10" in text
    assert "learned VAE (1 seed(s), 1.0 CPU min each): held out motion IoU 0.310" in text
    assert "on its own training clips motion IoU 0.600" in text
    assert "| trivial: reference photo held still | 0.800 |" in text
    assert json.loads((tmp_path / "r.json").read_text())["encode_cpu_ms"]["learned VAE"] == 20.0
