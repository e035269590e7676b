"""Same2X training: losses, caches, bucket sampler, pseudo filter, trainer, checkpoints, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from directanimator.data.cache import cache_key, cache_root, read_meta
from directanimator.data.dataset import CachedSamples
from directanimator.data.preprocess import preprocess
from directanimator.data.sampler import BucketBatchSampler
from directanimator.errors import InputError, TrainingError
from directanimator.train.checkpoint import latest_checkpoint, resolve_model_dir
from directanimator.train.losses import make_scheduler, s2x_loss, velocity
from directanimator.train.trainer import load_transformer, train, weights_digest

from ..conftest import PY, ROOT, cli, read_log


# ------------------------------------------------------------------ losses


def test_s2x_loss_is_minus_one_when_student_is_teacher(same_id_run, puppet_dataset, tiny_cfg):
    model = load_transformer(same_id_run).eval()
    data = CachedSamples(puppet_dataset, tiny_cfg(), "cross_id")
    b = data[0]
    x = torch.cat([b["latents"], torch.cat([b["reference_latent"], torch.zeros_like(b["latents"][1:])])], dim=1)[None]
    cues = {k: b[k][None] for k in ("pose_latents", "face_latents", "body_mask", "face_mask")}
    enc = torch.zeros(1, 8, 32)
    with torch.no_grad():
        h1 = model(x, enc, torch.tensor([500]), **cues, feature_depths=(1,), features_only=True).features[1]
        h2 = model(x, enc, torch.tensor([500]), **cues, feature_depths=(1,)).features[1]
    assert s2x_loss(h1, h2).item() == pytest.approx(-1.0, abs=1e-6)
    assert s2x_loss(h1, -h2).item() == pytest.approx(1.0, abs=1e-6)
    student = h2.clone().requires_grad_(True)
    teacher = h1.clone().requires_grad_(True)
    s2x_loss(teacher, student * 0.5 + torch.randn_like(student)).backward()
    assert teacher.grad is None and student.grad is not None


def test_same2x_objective_owns_teacher_depth_projector_and_lambda(same_id_run, puppet_dataset, tiny_cfg):
    """Same2XObjective returns (denoising, alignment) as REPA's loss does: the student's features at
    block D against the frozen teacher's (-1 when the student is the teacher on the same cues); no
    teacher or lambda 0: no alignment, no features asked of the student; `total` = L_d + lambda L_a;
    only the student and projector receive gradients."""
    from directanimator.train.losses import Same2XObjective, denoising_loss

    sched = make_scheduler()
    teacher = load_transformer(same_id_run)
    student = load_transformer(same_id_run).train()
    b = CachedSamples(puppet_dataset, tiny_cfg(), "cross_id")[0]
    lat, noise = b["latents"][None], torch.randn(1, *b["latents"].shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([400])
    x = torch.cat([sched.add_noise(lat, noise, t), b["reference_latent"][None].expand_as(lat)], dim=2)
    cues = {k: b[k][None] for k in ("pose_latents", "face_latents", "body_mask", "face_mask")}
    enc = torch.zeros(1, 8, 32)
    projector = torch.nn.Linear(128, 128)
    with torch.no_grad():
        projector.weight.copy_(torch.eye(128))
        projector.bias.zero_()
    obj = Same2XObjective(sched, teacher, depth=1, weight=0.5, projector=projector)
    loss_d, loss_a = obj(student, x, enc, t, cues, lat, noise, teacher_cues=cues)
    assert loss_a.item() == pytest.approx(-1.0, abs=1e-5)
    assert obj.total(loss_d, loss_a).item() == pytest.approx(loss_d.item() - 0.5, abs=1e-5)
    torch.testing.assert_close(loss_d, denoising_loss(student(x, enc, t, **cues).sample, lat, noise, t, sched))
    other = dict(cues, pose_latents=torch.roll(cues["pose_latents"], 3, dims=-1))
    loss_d2, loss_a2 = obj(student, x, enc, t, other, lat, noise, teacher_cues=cues)
    assert loss_a2.item() > loss_a.item() + 1e-6  # the student's pseudo cues differ from the teacher's own
    obj.total(loss_d2, loss_a2).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert projector.weight.grad is not None and any(p.grad is not None for p in student.parameters())
    plain = Same2XObjective(sched)  # the same-ID stage
    d, a = plain(student, x, enc, t, cues, lat, noise)
    assert not plain.aligns and a.item() == 0.0 and plain.total(d, a) is d
    assert not Same2XObjective(sched, teacher, depth=1, weight=0.0).aligns


def test_v_target_matches_the_x0_form():
    sched = make_scheduler()
    x0, eps = torch.randn(3, 2, 4, 4, 4), torch.randn(3, 2, 4, 4, 4)
    t = torch.tensor([10, 500, 990])
    a = sched.alphas_cumprod[t].float().view(3, 1, 1, 1, 1)
    torch.testing.assert_close(velocity(x0, eps, t, sched), a.sqrt() * eps - (1 - a).sqrt() * x0)


# ------------------------------------------------------------------ data


def test_bucket_sampler_uniform_sharded_deterministic_resumable():
    shapes = [(3, 16, 16)] * 7 + [(5, 16, 16)] * 5 + [(3, 8, 24)] * 4
    s0 = BucketBatchSampler(shapes, 2, seed=3, rank=0, world_size=2)
    s1 = BucketBatchSampler(shapes, 2, seed=3, rank=1, world_size=2)
    b0, b1 = s0.batches(0), s1.batches(0)
    assert len(b0) == len(b1) > 0
    for batch in b0 + b1:
        assert len({shapes[i] for i in batch}) == 1
    flat0, flat1 = {i for b in b0 for i in b}, {i for b in b1 for i in b}
    assert not flat0 & flat1
    assert s0.batches(0) == BucketBatchSampler(shapes, 2, seed=3, rank=0, world_size=2).batches(0)
    assert s0.batches(1) != s0.batches(0)
    s0.set_epoch(0, start=2)
    assert list(s0) == b0[2:]
    one = BucketBatchSampler(shapes, 2, seed=3)
    assert sorted(i for b in one.batches(0) for i in b) == list(range(len(shapes)))  # every sample once


def test_cache_is_keyed_by_config_and_content(puppet_dataset, tiny_cfg):
    from directanimator.config import load_config

    real = load_config("configs/cogvideox1.5-5b-i2v.yaml")
    key32 = cache_key(real)
    real.data.codec_dtype = "bfloat16"  # VAE latents in bf16 are other numbers: another cache
    assert cache_key(real) != key32
    cfg = tiny_cfg()
    other_dtype = tiny_cfg()
    other_dtype.data.codec_dtype = "bfloat16"  # the DCT codec ignores it: the same cache
    assert cache_key(other_dtype) == cache_key(cfg)
    root = cache_root(puppet_dataset, cfg)
    entries = sorted((root / "clips").glob("*.safetensors"))
    assert entries and all(read_meta(e)["key"] == cache_key(cfg) for e in entries)
    other = tiny_cfg()
    other.cues.pose.cutoff_cycles = 40.0
    assert cache_key(other) != cache_key(cfg)
    with pytest.raises(InputError, match="preprocess"):
        CachedSamples(puppet_dataset, other, "same_id")
    again = preprocess(puppet_dataset, cfg, progress=False)  # resumable: nothing rebuilt
    assert again["built"] == 0 and again["kept"] == len(entries)
    sample = CachedSamples(puppet_dataset, cfg, "same_id")[0]
    assert sample["latents"].shape == (3, 24, 16, 16) and sample["reference_latent"].shape == (1, 24, 16, 16)
    assert sample["body_mask"].shape == (3, 1, 16, 16) and 0 <= sample["body_mask"].min() <= sample["body_mask"].max() <= 1


def test_the_reference_is_the_photo_stored_with_the_clip(puppet_dataset, tiny_cfg):
    """A puppet training clip carries a reference photo in another pose: the cache encodes that photo
    as the reference, not one of the clip's frames (whose pose is close to the target's)."""
    from directanimator.data.cache import load_clip_frames
    from directanimator.windows import video_tensor
    from directanimator.data.format import clip_dir
    from directanimator.model import build_codec

    cfg = tiny_cfg()
    data = CachedSamples(puppet_dataset, cfg, "same_id")
    entry = data.items[0][0]  # the cache file of the first sample's clip
    meta = read_meta(entry)
    clip_id = meta["clip_id"]
    assert meta["reference_index"] == -1
    clip = load_clip_frames(clip_dir(puppet_dataset, clip_id), cfg.model.size)
    codec = build_codec(cfg.model)
    stored = codec.encode_reference(video_tensor(clip.reference[None]))[0]
    got = data[0]["reference_latent"].float()
    assert torch.allclose(got, stored, atol=2e-2)  # the cache holds float16
    own = [codec.encode_reference(video_tensor(f[None]))[0] for f in clip.frames]
    assert min(float((got - o).abs().max()) for o in own) > 0.1  # none of the clip's own frames


def test_cross_id_samples_pair_pseudo_cues_with_own_location_and_target(puppet_dataset, tiny_cfg):
    cfg = tiny_cfg()
    same = CachedSamples(puppet_dataset, cfg, "same_id")
    cross = CachedSamples(puppet_dataset, cfg, "cross_id")
    src, pseudo, w = cross.items[0]
    s = cross[0]
    own = same[same.items.index((src, None, w))]
    for k in ("latents", "reference_latent", "body_mask", "face_mask"):
        assert torch.equal(s[k], own[k])
    assert torch.equal(s["teacher_pose_latents"], own["pose_latents"])
    assert not torch.equal(s["pose_latents"], own["pose_latents"])


@pytest.mark.slow
def test_corrupt_clip_is_skipped_and_reported(tmp_path, tiny_cfg):
    from directanimator.synth.world import build_world

    root = tmp_path / "w"
    build_world(root, identities=3, motions=3, clips=4, frames=9, size=64, seed=2, progress=False)
    (root / "clips" / "train_00001" / "video.mp4").write_bytes(b"not a video at all")
    report = preprocess(root, tiny_cfg(), progress=False)
    assert report["failed"] == 1 and report["built"] == 2
    assert report["failures"][0]["clip_id"] == "train_00001"
    failures = (cache_root(root, tiny_cfg()) / "failures-0.jsonl").read_text()
    assert "train_00001" in failures
    r = cli("preprocess", "--dataset", str(root), "--config", "configs/tiny.yaml", "--quiet")
    assert r.returncode == 0 and "skipped train_00001" in r.stderr


def test_pseudo_filter_drops_a_broken_clip_and_keeps_a_good_one():
    from directanimator.config import PseudoFilterConfig
    from directanimator.data.cache import ClipFrames
    from directanimator.synth.pseudo import Degradation, render_pseudo
    from directanimator.synth.render import render_clip
    from directanimator.train.pseudo import score_pseudo

    def frames_of(clip):
        return ClipFrames(clip.frames, 15.0, clip.masks.astype(np.float32), clip.face_boxes, clip.keypoints,
                          clip.face_landmarks)

    source = frames_of(render_clip(11, 21, 31, 12, 64))
    good = frames_of(render_pseudo(11, 21, 12, 32, 12, 64, 15.0, Degradation(blur=0.3, pose_jitter=0.1, identity_leak=0.2)))
    broken_clip = render_pseudo(11, 23, 12, 32, 12, 64, 15.0, Degradation())  # another motion ...
    order = np.random.default_rng(0).permutation(12)                         # ... and shuffled in time
    broken = ClipFrames(broken_clip.frames[order], 15.0, broken_clip.masks[order].astype(np.float32),
                        np.full((12, 4), np.nan, np.float32), broken_clip.keypoints[order], None)
    thresholds = PseudoFilterConfig()
    ok = score_pseudo(source, good, thresholds)
    bad = score_pseudo(source, broken, thresholds)
    assert ok.kept, ok
    assert not bad.kept
    assert any(r.startswith("face_presence") for r in bad.reasons)
    assert bad.scores["pose_consistency"] < ok.scores["pose_consistency"]
    assert bad.scores["flicker"] > ok.scores["flicker"]


def test_pseudo_report_on_disk(puppet_dataset):
    report = json.loads((puppet_dataset / "pseudo" / "filter_report.json").read_text())
    lines = [json.loads(x) for x in (puppet_dataset / "pseudo" / "manifest.jsonl").read_text().splitlines()]
    assert report["pseudo_clips"] == len(lines) == report["kept"] + report["dropped"]
    assert all(set(x["scores"]) >= {"mask_iou", "pose_consistency", "face_presence", "flicker"} for x in lines)
    assert all(x["kept"] == (not x["reasons"]) for x in lines)


def test_misalignment_moves_the_person_but_keeps_the_frame():
    from directanimator.data.cache import misalign

    pose = np.zeros((2, 32, 32), np.uint8)
    pose[:, 10:20, 12:18] = 200
    out = misalign(pose, (pose > 0).astype(np.float32), 1.0, (0.25, 0.0))
    assert out.shape == pose.shape
    assert np.array_equal(out[:, 10:20, 20:26], pose[:, 10:20, 12:18])


# ------------------------------------------------------------------ trainer


def test_validation_logs_held_out_metrics_and_keeps_the_best(same_id_run, puppet_dataset, tiny_cfg):
    """train.validation: the trivial answers once, then held-out loss and sample metrics every 5
    steps; RUN/best holds the checkpoint with the best moving-region PSNR and loads as a pipeline."""
    from directanimator.pipeline import DirectAnimatorPipeline
    from directanimator.train.validation import build_validation_set, validate

    lines = [json.loads(x) for x in (same_id_run / "validation.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 0 and set(lines[0]["trivial_answers"]) == {"still", "pasted", "silhouette"}
    assert [x["step"] for x in lines[1:]] == [5, 10]
    for x in lines[1:]:
        assert all(np.isfinite(x[k]) for k in ("val_loss", "val_ssim", "val_psnr", "val_person_psnr", "val_moving_psnr"))
    best = json.loads((same_id_run / "best" / "best.json").read_text())
    assert best["val_moving_psnr"] == max(x["val_moving_psnr"] for x in lines[1:])
    pipe = DirectAnimatorPipeline.from_pretrained(same_id_run / "best")
    # validation is deterministic: the kept model gives the logged numbers again
    cfg = tiny_cfg()
    from directanimator.model import build_codec

    vs = build_validation_set(puppet_dataset, cfg, build_codec(cfg.model), 16)
    again = validate(pipe.transformer, vs, pipe.codec, pipe.text_encoder([""]), 3)
    assert again["val_loss"] == pytest.approx(best["val_loss"], rel=1e-4)
    assert again["val_moving_psnr"] == pytest.approx(best["val_moving_psnr"], abs=1e-3)


def test_same_id_run_logs_and_checkpoints(same_id_run):
    log = read_log(same_id_run)
    assert [e["step"] for e in log] == list(range(1, 11))
    for key in ("loss", "loss_denoise", "lr", "grad_norm", "step_time", "samples_per_s"):
        assert all(np.isfinite(e[key]) for e in log), key
    assert latest_checkpoint(same_id_run).name == "step_0000010"
    files = {p.name for p in latest_checkpoint(same_id_run).iterdir()}
    assert {"model", "optimizer.safetensors", "optimizer.json", "scheduler.json", "rng.safetensors", "state.json"} <= files
    assert not list(Path(same_id_run).rglob("*.pt")) and not list(Path(same_id_run).rglob("*.bin"))
    assert resolve_model_dir(same_id_run) == latest_checkpoint(same_id_run) / "model"


def test_cross_id_keeps_teacher_frozen_and_logs_both_terms(same_id_run, puppet_dataset, tiny_cfg, tmp_path):
    cfg = tiny_cfg(stage="cross_id", teacher=str(same_id_run), max_steps=6)
    cfg.data.dataset = str(puppet_dataset)
    before = weights_digest(load_transformer(same_id_run))
    summary = train(cfg, tmp_path / "x", progress=False)
    assert summary["teacher_sha1"] == before == weights_digest(load_transformer(same_id_run))
    log = read_log(tmp_path / "x")
    assert all(-1 <= e["loss_s2x"] <= 1 for e in log)
    assert all(e["loss"] == pytest.approx(e["loss_denoise"] + 0.5 * e["loss_s2x"], rel=1e-5) for e in log)
    assert summary["s2x_depth"] == 1  # round(4 * 10 / 42)
    # the student starts from the teacher: at step 1 their block-D features nearly agree
    assert log[0]["loss_s2x"] < -0.9


def test_cross_id_from_the_base_model_without_s2x_needs_no_teacher(puppet_dataset, tiny_cfg, tmp_path):
    """Figure 1's arm (a), cross-ID from the base model without S2X, uses no teacher and needs none;
    a student that starts from the teacher, or aligns to one, still refuses to run without it."""
    from directanimator.errors import InputError

    cfg = tiny_cfg(stage="cross_id", max_steps=2)
    cfg.data.dataset = str(puppet_dataset)
    cfg.train.init, cfg.train.s2x.weight = "base", 0.0
    summary = train(cfg, tmp_path / "a", progress=False)
    assert summary["steps"] == 2 and summary["teacher_sha1"] is None and summary["s2x_depth"] is None
    for init, weight in (("same_id", 0.0), ("base", 0.5)):
        cfg.train.init, cfg.train.s2x.weight = init, weight
        with pytest.raises(InputError, match="needs a same-ID teacher"):
            train(cfg, tmp_path / f"{init}{weight}", progress=False)


def test_teacher_sees_the_clips_own_cues_and_the_student_the_pseudo_cues(same_id_run, puppet_dataset, tiny_cfg,
                                                                         tmp_path, monkeypatch):
    """Eq 4: the frozen teacher sees the clip's own (same-ID) cues, the student the pseudo cues, on
    the same sample. Every forward call is recorded and matched against the dataset's pairs.
    (Planted bug it catches: the teacher given the student's pseudo cues.)"""
    from directanimator.data.dataset import CachedSamples
    from directanimator.model import CueFusionTransformer3D

    calls = []
    original = CueFusionTransformer3D.forward

    def spy(self, *args, **kwargs):
        calls.append(("teacher" if kwargs.get("features_only") else "student", kwargs["pose_latents"].clone(),
                      kwargs["face_latents"].clone()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CueFusionTransformer3D, "forward", spy)
    cfg = tiny_cfg(stage="cross_id", teacher=str(same_id_run), max_steps=3)
    cfg.data.dataset = str(puppet_dataset)
    train(cfg, tmp_path / "x", progress=False)
    data = CachedSamples(puppet_dataset, cfg, "cross_id")
    samples = [data[i] for i in range(len(data))]
    assert any(not torch.equal(s["pose_latents"], s["teacher_pose_latents"]) for s in samples)
    student = [c for c in calls if c[0] == "student"]
    teacher = [c for c in calls if c[0] == "teacher"]
    assert len(student) == len(teacher) == 3
    for (_, s_pose, s_face), (_, t_pose, t_face) in zip(student, teacher):
        for row in range(s_pose.shape[0]):
            assert any(torch.equal(t_pose[row], s["teacher_pose_latents"]) and torch.equal(t_face[row], s["teacher_face_latents"])
                       and torch.equal(s_pose[row], s["pose_latents"]) and torch.equal(s_face[row], s["face_latents"])
                       for s in samples), "teacher and student cues are not one sample's own and pseudo cues"


def test_nonfinite_losses_are_skipped_then_stop_the_run(puppet_dataset, tiny_cfg, tmp_path, monkeypatch):
    import directanimator.train.losses as losses_mod  # where Same2XObjective computes it

    real = losses_mod.denoising_loss
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(losses_mod, "denoising_loss", flaky)
    cfg = tiny_cfg(max_steps=6)
    cfg.data.dataset = str(puppet_dataset)
    summary = train(cfg, tmp_path / "flaky", progress=False)
    assert summary["skipped_nonfinite"] == 1 and summary["steps"] == 6
    assert all(np.isfinite(e["loss"]) for e in read_log(tmp_path / "flaky"))

    monkeypatch.setattr(losses_mod, "denoising_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    cfg = tiny_cfg(max_steps=50, max_nonfinite_in_row=3)
    cfg.data.dataset = str(puppet_dataset)
    with pytest.raises(TrainingError, match="non-finite"):
        train(cfg, tmp_path / "broken", progress=False)


@pytest.mark.slow
def test_train_cli_bad_inputs(same_id_run, puppet_dataset, tmp_path, cli_here):
    base = ["train", "--config", "configs/tiny.yaml", "--dataset", str(puppet_dataset), "--quiet"]
    r = cli(*base, "--stage", "cross_id", "--out", str(tmp_path / "a"))  # a real process; the rest in this one
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--teacher" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli_here(*base, "--out", str(same_id_run))
    assert r.returncode == 2 and "--resume" in r.stderr
    r = cli_here(*base, "--stage", "cross_id", "--teacher", str(tmp_path / "nope"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
    bad_cfg = tmp_path / "wide.yaml"
    bad_cfg.write_text((ROOT / "configs/tiny.yaml").read_text().replace("num_layers: 4", "num_layers: 3"))
    r = cli_here("train", "--config", str(bad_cfg), "--dataset", str(puppet_dataset), "--stage", "cross_id",
                 "--teacher", str(same_id_run), "--out", str(tmp_path / "c"), "--quiet")
    assert r.returncode == 2 and "another config" in r.stderr and "num_layers" in r.stderr
    r = cli_here("train", "--config", "configs/tiny.yaml", "--out", str(tmp_path / "d"))
    assert r.returncode == 2 and "dataset" in r.stderr
    r = cli_here("train", "--config", "configs/tiny.yaml", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: dataset not found: {tmp_path / 'nowhere'}"
    r = cli_here(*base, "--max-steps", "0", "--out", str(tmp_path / "f"))
    assert r.returncode == 2 and "--max-steps) must be at least 1, got 0" in r.stderr and not (tmp_path / "f").exists()
    import torch

    if not torch.cuda.is_available():
        r = cli_here("preprocess", "--dataset", str(puppet_dataset), "--config", "configs/tiny.yaml", "--device", "cuda")
        assert r.returncode == 2 and r.stderr.strip() == "error: --device cuda: no CUDA GPU is visible to torch on this machine"
    r = cli_here("preprocess", "--dataset", str(puppet_dataset), "--config", "configs/tiny.yaml", "--device", "cpu", "--quiet")
    assert r.returncode == 0 and '"built": 0' in r.stdout  # the cache is complete: nothing rebuilt


@pytest.mark.slow
def test_deepspeed_is_told_the_micro_batch_the_trainer_uses():
    """The trainer keeps its own rank-sharded DataLoader out of accelerate.prepare(), so DeepSpeed's
    "auto" micro-batch (configs/accelerate/deepspeed_zero2_8gpu.yaml) must be filled in by hand, or
    accelerate refuses to start. DeepSpeed itself does not run on a CPU: the plugin
    object is stubbed with the config accelerate would hand it."""
    from types import SimpleNamespace

    from directanimator.train.trainer import _tell_deepspeed_the_batch

    ds = {"train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto", "gradient_accumulation_steps": 2}
    acc = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config=ds)),
                          gradient_accumulation_steps=2, num_processes=8)
    _tell_deepspeed_the_batch(acc, 1)
    assert ds["train_micro_batch_size_per_gpu"] == 1 and ds["train_batch_size"] == 16
    fixed = {"train_micro_batch_size_per_gpu": 4, "train_batch_size": 32}
    acc.state.deepspeed_plugin.deepspeed_config = fixed
    _tell_deepspeed_the_batch(acc, 1)  # a number the user wrote stays
    assert fixed == {"train_micro_batch_size_per_gpu": 4, "train_batch_size": 32}
    _tell_deepspeed_the_batch(SimpleNamespace(state=SimpleNamespace()), 1)  # not DeepSpeed: nothing to do


def test_killed_run_resumes_on_the_same_loss_curve(puppet_dataset, tmp_path):
    base = ["train", "--config", "configs/tiny.yaml", "--dataset", str(puppet_dataset), "--quiet"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/tiny.yaml").read_text() +
                   "train:\n  batch_size: 2\n  checkpoint_every: 5\n  keep_last: 3\n  warmup_steps: 5\n")
    base[2] = str(cfg)
    straight = cli(*base, "--out", str(tmp_path / "straight"), "--max-steps", "40")
    assert straight.returncode == 0, straight.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([PY, "-m", "directanimator", *base, "--out", str(tmp_path / "killed"), "--max-steps", "40"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120  # killed once it has a complete checkpoint, whichever the poll sees first
    while latest_checkpoint(tmp_path / "killed") is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(tmp_path / "killed")
    assert killed_at is not None
    state = json.loads((killed_at / "state.json").read_text())
    assert state["cpu_seconds_before"] > 0
    # what an earlier sitting spent is carried from the checkpoint into the run's total (set large
    # here, so that the resumed sitting's own time cannot make up for it)
    (killed_at / "state.json").write_text(json.dumps(dict(state, cpu_seconds_before=1e6)))
    resumed = cli(*base, "--out", str(tmp_path / "killed"), "--max-steps", "40", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "killed")
    assert [e["step"] for e in b] == list(range(1, 41))
    for x, y in zip(a, b):
        assert x["loss"] == y["loss"] and x["lr"] == y["lr"], (x["step"], x["loss"], y["loss"])
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert 1e6 < summary["cpu_seconds"] < 1e6 + 3600 and summary["cpu_seconds_complete"] is True
    # a checkpoint from before the CPU time was carried: the total is marked incomplete
    ckpt = latest_checkpoint(tmp_path / "straight")
    state = json.loads((ckpt / "state.json").read_text())
    state.pop("cpu_seconds_before"), state.pop("cpu_complete")
    (ckpt / "state.json").write_text(json.dumps(state))
    again = cli(*base, "--out", str(tmp_path / "straight"), "--max-steps", "42", "--resume")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "straight" / "summary.json").read_text())["cpu_seconds_complete"] is False


@pytest.mark.slow
def test_two_processes_train_with_ddp_and_end_identical(puppet_dataset, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(Path(PY).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "directanimator.train",
           "--config", "configs/tiny.yaml", "--dataset", str(puppet_dataset), "--out", str(out), "--max-steps", "6",
           "--quiet"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    assert summary["weights_sha1"] == weights_digest(load_transformer(out))
    assert all(np.isfinite(e["loss"]) for e in read_log(out))


def test_accelerate_config_files_load_with_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file

    types = {}
    for f in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        c = load_config_from_file(str(f))
        types[f.stem] = str(c.distributed_type).split(".")[-1]
    assert types == {"ddp_cpu_2proc": "MULTI_CPU", "ddp_8gpu": "MULTI_GPU", "deepspeed_zero2_8gpu": "DEEPSPEED",
                     "fsdp_8gpu": "FSDP", "fsdp_wan_8gpu": "FSDP"}
    ds = load_config_from_file(str(ROOT / "configs/accelerate/deepspeed_zero2_8gpu.yaml"))
    assert ds.deepspeed_config["zero_stage"] == 2 and ds.mixed_precision == "bf16"
    fsdp = load_config_from_file(str(ROOT / "configs/accelerate/fsdp_8gpu.yaml"))
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "CogVideoXBlock"
    assert fsdp.fsdp_config["fsdp_version"] == 2  # train/sharded.py resumes FSDP2's DTensor shards
    wan = load_config_from_file(str(ROOT / "configs/accelerate/fsdp_wan_8gpu.yaml"))
    assert wan.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "WanTransformerBlock"
    assert wan.fsdp_config["fsdp_version"] == 2


def test_gradient_checkpointing_gives_the_same_gradients(tiny_cfg):
    from directanimator.model import build_transformer

    cfg = tiny_cfg().model
    torch.manual_seed(0)
    a = build_transformer(cfg, 24)
    b = build_transformer(cfg, 24)
    b.load_state_dict(a.state_dict())
    b.enable_gradient_checkpointing()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 48, 16, 16, generator=g)
    cues = {k: torch.randn(1, 3, c, 16, 16, generator=g) for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    for m in (a, b):
        with torch.no_grad():  # move the injection off zero so its gradients are not trivially zero
            for n, p in m.named_parameters():
                if n.startswith("cue_fusion") and n.endswith("bias"):
                    p.add_(0.1)
        m(x, torch.zeros(1, 8, 32), torch.tensor([300]), **cues).sample.square().mean().backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.slow
def test_bootstrap_and_external_pseudo_generators(same_id_run, puppet_dataset, tiny_cfg, tmp_path):
    import shutil

    from directanimator.data.format import read_manifest
    from directanimator.train.pseudo import make_pseudo, read_pseudo_manifest
    from directanimator.video import iter_frames

    world = tmp_path / "world"
    shutil.copytree(puppet_dataset, world, ignore=shutil.ignore_patterns("cache", "pseudo"))
    cfg = tiny_cfg()
    cfg.pseudo.generator = "directanimator"
    cfg.pseudo.checkpoint = str(same_id_run)
    cfg.pseudo.min_per_clip = cfg.pseudo.max_per_clip = 1
    cfg.inference.steps = 2
    report = make_pseudo(world, cfg, progress=False)
    train = [r for r in read_manifest(world) if r.split == "train"]
    assert report["pseudo_clips"] == len(train)
    items = read_pseudo_manifest(world, kept_only=False)
    assert all(x["generator"] == "directanimator" and x["reference_clip"] != x["source_clip"] for x in items)
    assert all(set(x["scores"]) >= {"mask_iou", "flicker"} for x in items)

    manifest = tmp_path / "external.jsonl"
    src = world / "clips" / train[0].clip_id / "video.mp4"
    manifest.write_text(json.dumps({"source_clip": train[0].clip_id, "video": str(src)}) + "\n")
    cfg.pseudo.generator = "external"
    cfg.pseudo.external_manifest = str(manifest)
    report = make_pseudo(world, cfg, overwrite=True, progress=False)
    assert report["pseudo_clips"] == 1
    item = read_pseudo_manifest(world, kept_only=False)[0]
    assert item["generator"] == "external" and item["video"] == str(src)
    assert item["kept"] == (not item["reasons"]) and 0 <= item["scores"]["mask_iou"] <= 1
    pseudo_video = world / "pseudo" / "clips" / item["pseudo_id"] / "video.mp4"
    assert len(list(iter_frames(pseudo_video))) == len(list(iter_frames(src)))


def test_pseudo_clips_of_test_clips_are_benchmark_input_and_never_training_data(puppet_dataset, tiny_cfg, tmp_path):
    """`pseudo --splits train test`: the test clips' pseudo clips carry their split; preprocessing and
    the cross-ID stage read only the training clips' ones."""
    import shutil
    from dataclasses import replace

    from directanimator.data.format import read_manifest, read_pseudo_manifest, write_manifest
    from directanimator.train.pseudo import make_pseudo

    world = tmp_path / "world"
    shutil.copytree(puppet_dataset, world, ignore=shutil.ignore_patterns("cache", "pseudo"))
    records = read_manifest(world)
    held = next(r for r in records if r.split == "train" and r.role == "clip")
    write_manifest(world, [replace(r, split="test") if r is held else r for r in records])
    cfg = tiny_cfg()
    cfg.pseudo.min_per_clip = cfg.pseudo.max_per_clip = 1
    with pytest.raises(InputError, match="train and/or test"):
        make_pseudo(world, cfg, progress=False, splits=("val",))
    train_clips = sum(r.split == "train" and r.role == "clip" for r in records) - 1
    report = make_pseudo(world, cfg, progress=False, splits=("train", "test"))
    assert report["source_clips"] == train_clips + 1 and report["splits"] == ["train", "test"]
    tests = read_pseudo_manifest(world, kept_only=False, split="test")
    assert [(x["source_clip"], x["split"]) for x in tests] == [(held.clip_id, "test")]
    assert held.clip_id not in {x["source_clip"] for x in read_pseudo_manifest(world, kept_only=False, split="train")}
    meta = json.loads((world / "pseudo" / "clips" / tests[0]["pseudo_id"] / "meta.json").read_text())
    assert meta["split"] == "test" and meta["source_clip"] == held.clip_id
    # kept or not by the filter, a test clip's pseudo clip must never be trained on
    lines = [json.loads(line) for line in (world / "pseudo" / "manifest.jsonl").read_text().splitlines()]
    lines = [dict(x, kept=True) if x["split"] == "test" else x for x in lines]
    (world / "pseudo" / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    built = preprocess(world, cfg, progress=False)
    assert sum(built[k] for k in ("pseudo_built", "pseudo_kept", "pseudo_failed")) == len(
        read_pseudo_manifest(world, split="train"))
    assert not (cache_root(world, cfg) / "pseudo" / f"{tests[0]['pseudo_id']}.safetensors").exists()
    samples = CachedSamples(world, cfg, stage="cross_id")
    assert all(held.clip_id not in str(pseudo) for _, pseudo, _ in samples.items)


def test_preprocess_shards_are_disjoint_and_complete(puppet_dataset, tiny_cfg):
    reports = [preprocess(puppet_dataset, tiny_cfg(), progress=False, rank=r, world_size=2) for r in (0, 1)]
    assert reports[0]["clips"] + reports[1]["clips"] == len(list((cache_root(puppet_dataset, tiny_cfg()) / "clips").glob("*.safetensors")))
    assert all(r["built"] == 0 and r["failed"] == 0 for r in reports)  # everything was cached already


def test_projector_accumulation_and_ema_options(same_id_run, puppet_dataset, tiny_cfg, tmp_path):
    from directanimator.train.plot import plot_losses

    cfg = tiny_cfg(stage="cross_id", teacher=str(same_id_run), max_steps=3, grad_accum=2, ema_decay=0.9)
    cfg.train.s2x.projector = True
    cfg.data.dataset = str(puppet_dataset)
    summary = train(cfg, tmp_path / "p", progress=False)
    assert summary["steps"] == 3
    ckpt = latest_checkpoint(tmp_path / "p")
    assert (ckpt / "ema.safetensors").is_file()
    log = read_log(tmp_path / "p")
    assert all(e["samples_per_s"] > 0 and e["loss_s2x"] is not None for e in log)
    png = plot_losses([same_id_run, tmp_path / "p"], tmp_path / "curves.png", labels=["same", "cross"])
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_text_encoders():
    from directanimator.model import NullPrompt, T5PromptEncoder

    emb = NullPrompt(8, 32)(["a", "b"])
    assert emb.shape == (2, 8, 32) and emb.abs().sum() == 0
    with pytest.raises(InputError, match="text_encoder/config.json"):
        T5PromptEncoder("/nonexistent/CogVideoX")


@pytest.mark.slow
def test_a_short_run_of_the_recipe_beats_the_still_photo_on_its_training_windows(puppet_dataset, tmp_path):
    """configs/demo.yaml's recipe (reference in every latent frame), 1,000 same-ID steps on the tiny
    world: its DDIM samples of its own training windows are closer to the true frames than the
    reference photo held still. (Guards the reference layout and the sampler: with the reference in
    latent frame 0 only it scored 18.7 dB against the still photo's 26.0; with it, 26.9.)"""
    from directanimator.config import load_config
    from directanimator.data.dataset import CachedSamples
    from directanimator.data.preprocess import preprocess
    from directanimator.model import build_codec
    from directanimator.model.sampling import build_scheduler, sample_latents
    from directanimator.pipeline import DirectAnimatorPipeline

    cfg = load_config("configs/demo.yaml")
    cfg.data.dataset = str(puppet_dataset)
    cfg.data.window_stride = None
    cfg.train.max_steps = 1000
    cfg.train.batch_size = 4
    cfg.train.checkpoint_every = 1000
    cfg.train.validation.dataset = None
    preprocess(puppet_dataset, cfg, progress=False)
    train(cfg, tmp_path / "run", progress=False)
    pipe = DirectAnimatorPipeline.from_pretrained(tmp_path / "run")
    assert pipe.transformer.config.reference_layout == "all_frames"
    codec = build_codec(cfg.model)
    data = CachedSamples(puppet_dataset, cfg, "same_id")
    batch = {k: torch.stack([data[i][k] for i in range(len(data))]) for k in data[0]}
    cues = {k: batch[k] for k in ("pose_latents", "face_latents", "body_mask", "face_mask")}
    enc = pipe.text_encoder([""]).expand(len(data), -1, -1)
    lat = sample_latents(pipe.transformer, build_scheduler("ddim"), batch["reference_latent"], cues, enc, 10,
                         torch.Generator().manual_seed(0))
    truth = codec.decode(batch["latents"])  # frames in [-1, 1]: PSNR with a data range of 2

    def psnr(latents):
        return float(10 * torch.log10(4.0 / codec.decode(latents).sub(truth).pow(2).mean()))

    model_psnr, still_psnr = psnr(lat), psnr(batch["reference_latent"].expand_as(batch["latents"]))
    print(f"training windows: model {model_psnr:.2f} dB, still photo {still_psnr:.2f} dB")
    assert model_psnr > still_psnr + 0.5


def tiny_t5_folder(root: Path) -> Path:
    """text_encoder/ (a random 1-layer T5, safetensors) and tokenizer/spiece.model (SentencePiece
    trained on made-up text) in the CogVideoX folder layout."""
    import sentencepiece as spm
    from transformers import T5Config, T5EncoderModel

    (root / "tokenizer").mkdir(parents=True)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"a person {w} in a {c} room, dancing slowly number {k}" for k in range(60)
                                for w, c in (("walks", "red"), ("jumps", "blue"), ("waves", "green"))))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "tokenizer" / "spiece"),
                                   vocab_size=40, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(
        root / "text_encoder", safe_serialization=True)
    return root


def test_t5_from_a_real_layout_folder_with_its_spiece_tokenizer(tmp_path):
    """A CogVideoX-layout folder (text_encoder/ safetensors, tokenizer/spiece.model) loads with this
    project's pins (the tokenizer read by sentencepiece itself, no protobuf conversion) and encodes
    prompts, the empty one included, with T5's ids: pieces, </s>, padding."""
    import sentencepiece as spm

    from directanimator.model import T5PromptEncoder
    from directanimator.model.text import SentencePieceT5Tokenizer

    tiny_t5_folder(tmp_path)
    tok = SentencePieceT5Tokenizer(tmp_path / "tokenizer" / "spiece.model")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer" / "spiece.model"))
    ids = tok("a person walks", 32)[0].tolist()
    pieces = sp.encode("a person walks")
    assert len(pieces) < 31 and ids == pieces + [1] + [0] * (31 - len(pieces))
    assert tok("", 5)[0].tolist() == [1, 0, 0, 0, 0]
    assert tok("a person walks " * 20, 6)[0].tolist()[-1] == 1  # truncated, still ends with </s>
    enc = T5PromptEncoder(tmp_path, max_length=12)
    emb = enc(["a person walks", ""])
    assert emb.shape == (2, 12, 16) and torch.isfinite(emb).all()
    assert not torch.equal(emb[0], emb[1]) and emb[1].std() > 0  # T5(""): not zeros
    # released after encoding (inference.release_text_encoder): cached prompts need no T5, a new one reloads it
    enc.release()
    assert enc.model is None
    assert torch.equal(enc(["a person walks"])[0], emb[0]) and enc.model is None
    again = enc(["a person jumps"])
    assert enc.model is not None and torch.equal(again[0], T5PromptEncoder(tmp_path, max_length=12)(["a person jumps"])[0])


def test_pseudo_filter_scores_follow_the_degradations_they_measure():
    """pose_jitter rises with the pose-jitter strength and identity_leak with the identity-leak
    strength, each on its own (the others held at 0), and each drops its clip through its own
    threshold. (The calibrated defaults trade recall against dropping good clips; their precision
    and recall are in experiments/reports/pseudo_filter.md, so this test sets its own thresholds.)"""
    from directanimator.config import PseudoFilterConfig
    from directanimator.data.cache import ClipFrames
    from directanimator.synth.pseudo import Degradation, render_pseudo
    from directanimator.synth.render import render_clip
    from directanimator.train.pseudo import pseudo_reference, score_pseudo

    def frames_of(clip):
        return ClipFrames(clip.frames, 15.0, clip.masks.astype(np.float32), clip.face_boxes, clip.keypoints,
                          clip.face_landmarks)

    source = frames_of(render_clip(3, 4, 5, 17, 64))
    ref = pseudo_reference(8, 4, 9, 64, 15.0)
    thresholds = PseudoFilterConfig(max_pose_jitter=0.03, max_identity_leak=0.12)
    scores = {}
    for name, deg in (("clean", Degradation()), ("jitter", Degradation(pose_jitter=0.3)),
                      ("leak", Degradation(identity_leak=0.3))):
        pseudo = frames_of(render_pseudo(3, 4, 8, 9, 17, 64, 15.0, deg))
        scores[name] = score_pseudo(source, pseudo, thresholds, ref.frames[0], ref.masks[0])
    assert scores["jitter"].scores["pose_jitter"] > 2 * scores["clean"].scores["pose_jitter"]
    assert scores["leak"].scores["pose_jitter"] == scores["clean"].scores["pose_jitter"]  # a leak is no jitter
    assert scores["leak"].scores["identity_leak"] > scores["clean"].scores["identity_leak"] + 0.08
    assert scores["clean"].kept, scores["clean"].reasons
    assert [r.split()[0] for r in scores["jitter"].reasons] == ["pose_jitter"]
    assert [r.split()[0] for r in scores["leak"].reasons] == ["identity_leak"]


def test_a_pretrained_model_without_a_text_encoder_path_gets_t5_of_the_empty_prompt_cached(tmp_path):
    """What CogVideoX saw for an empty prompt is T5(""), not zeros: computed once with the model
    folder's T5, then read from the cache without loading T5 (here: with the T5 weights gone)."""
    import shutil

    from directanimator.config import ModelConfig
    from directanimator.model import CachedPrompt, T5PromptEncoder, build_text_encoder

    folder = tiny_t5_folder(tmp_path / "CogVideoX")
    want = T5PromptEncoder(folder, max_length=12)([""])
    cache = tmp_path / "cache"
    got = CachedPrompt(folder, 12, cache_dir=cache)([""])
    assert torch.equal(got, want) and got.std() > 0 and len(list(cache.glob("*.safetensors"))) == 1
    shutil.rmtree(folder / "text_encoder")
    assert torch.equal(CachedPrompt(folder, 12, cache_dir=cache)(["", ""])[1], want[0])

    class Dims:
        config = type("C", (), {"max_text_seq_length": 12, "text_embed_dim": 16})()

    assert isinstance(build_text_encoder(ModelConfig(pretrained=str(folder)), Dims()), CachedPrompt)


def test_lora_and_cue_only_runs_train_resume_and_animate(puppet_dataset, tiny_cfg, tmp_path):
    """train.trainable: a LoRA same-ID run and a cue-only cross-ID run on it train only what the
    config says (counts checked), keep the backbone bit for bit, save the trained part on its own,
    resume on the same loss curve, and animate merged or not with the same result."""
    from safetensors.torch import load_file

    from directanimator.model import build_transformer
    from directanimator.model.adapters import has_lora, is_cue_param
    from directanimator.model.sampling import sample_latents
    from directanimator.pipeline import DirectAnimatorPipeline

    def config(mode, steps, **train_kw):
        cfg = tiny_cfg(max_steps=steps, **train_kw)
        cfg.data.dataset = str(puppet_dataset)
        cfg.train.trainable = mode
        cfg.train.lora.rank, cfg.train.lora.alpha = 4, 8.0
        return cfg

    lora_run = tmp_path / "lora"
    train(config("lora", 10), lora_run, progress=False)
    ck = latest_checkpoint(lora_run)
    meta = json.loads((ck / "adapter" / "adapter.json").read_text())
    assert meta == {"mode": "lora", "rank": 4, "alpha": 8.0, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
    adapter = load_file(str(ck / "adapter" / "adapter.safetensors"))
    lora_keys = [k for k in adapter if k.startswith("lora.")]
    cfg = config("lora", 10)
    torch.manual_seed(cfg.train.seed)
    init = build_transformer(cfg.model, 24)
    n_linear = sum(1 for name, _ in init.named_modules() if name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")))
    assert len(lora_keys) == 2 * n_linear  # A and B per targeted Linear
    saved = load_file(str(ck / "model" / "diffusion_pytorch_model.safetensors"))
    assert set(saved) == set(init.state_dict())  # plain names: loadable as any model folder
    for name, value in init.state_dict().items():
        same = torch.equal(saved[name], value)
        assert same != is_cue_param(init, name), name  # backbone unchanged, every cue module trained
    # resume: 5 steps, then on to 10, on the straight run's loss curve
    half = tmp_path / "half"
    train(config("lora", 5), half, progress=False)
    train(config("lora", 10), half, resume=True, progress=False)
    assert [e["loss"] for e in read_log(half)] == [e["loss"] for e in read_log(lora_run)]
    # stage 2 on it, cue modules only; the teacher (the LoRA run, merged) stays frozen
    cross = config("cue_only", 5, stage="cross_id", teacher=str(lora_run))
    train(cross, tmp_path / "cue_only", progress=False)
    ck2 = latest_checkpoint(tmp_path / "cue_only")
    assert json.loads((ck2 / "adapter" / "adapter.json").read_text()) == {"mode": "cue_only"}
    assert all(k.startswith("cue.") for k in load_file(str(ck2 / "adapter" / "adapter.safetensors")))
    # animate: merged and live LoRA layers give the same latents
    merged = DirectAnimatorPipeline.from_pretrained(lora_run)
    live = DirectAnimatorPipeline.from_pretrained(lora_run, merge_lora=False)
    assert not has_lora(merged.transformer) and has_lora(live.transformer)
    g = torch.Generator().manual_seed(0)
    cues = {k: torch.randn(1, 3, c, 16, 16, generator=g) for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    ref = torch.randn(1, 1, 24, 16, 16, generator=g)
    outs = [sample_latents(p.transformer, p.scheduler, ref, cues, p.text_encoder([""]), 3, torch.Generator().manual_seed(1))
            for p in (merged, live)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-4)
    assert DirectAnimatorPipeline.from_pretrained(tmp_path / "cue_only").transformer is not None


@pytest.mark.slow
def test_8bit_adamw_trains_and_resumes_on_the_same_loss_curve(puppet_dataset, tmp_path):
    """train.optimizer: adamw8bit (bitsandbytes, whose CPU backend runs it here): the moments are
    stored in 8 bits in the checkpoint, and a run resumed from an earlier checkpoint continues the
    uninterrupted run's loss curve exactly."""
    from safetensors import safe_open

    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/tiny.yaml").read_text() +
                   "train:\n  batch_size: 2\n  checkpoint_every: 2\n  keep_last: 5\n  warmup_steps: 2\n"
                   "  optimizer: adamw8bit\n")
    base = ["train", "--config", str(cfg), "--dataset", str(puppet_dataset), "--quiet", "--out", str(tmp_path / "r"),
            "--max-steps", "6"]
    first = cli(*base)
    assert first.returncode == 0, first.stderr
    straight = read_log(tmp_path / "r")
    with safe_open(str(tmp_path / "r" / "checkpoints" / "step_0000002" / "optimizer.safetensors"), "pt") as f:
        moments = [f.get_tensor(k) for k in f.keys() if k.endswith(("/state1", "/state2"))]
    eight = sum(m.numel() for m in moments if m.dtype == torch.uint8)
    # 8-bit moments (bitsandbytes keeps 32-bit ones for tensors under 4,096 values: biases, norms)
    assert eight > 0.9 * sum(m.numel() for m in moments)
    for later in ("step_0000004", "step_0000006"):
        import shutil

        shutil.rmtree(tmp_path / "r" / "checkpoints" / later)
    resumed = cli(*base, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [(e["step"], e["loss"], e["grad_norm"]) for e in read_log(tmp_path / "r")] == \
        [(e["step"], e["loss"], e["grad_norm"]) for e in straight]
    assert straight[-1]["loss"] != straight[0]["loss"]


def test_8bit_adamw_refuses_sharded_runs_and_a_missing_install(monkeypatch):
    from types import SimpleNamespace

    from directanimator.train.trainer import make_optimizer

    tc = SimpleNamespace(optimizer="adamw8bit", lr=1e-3, weight_decay=0.0)
    params = [torch.nn.Parameter(torch.zeros(64))]
    with pytest.raises(InputError, match="not deepspeed"):
        make_optimizer(tc, params, "deepspeed")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(InputError, match=r"pip install -e \"\.\[bnb\]\""):
        make_optimizer(tc, params)


@pytest.mark.slow
def test_lora_run_with_a_bf16_frozen_backbone_trains_resumes_and_animates(puppet_dataset, tmp_path, cli_here):
    """train.frozen_dtype: bfloat16: the frozen backbone in bf16 (half its memory), LoRA and cue
    modules trained in fp32 under bf16 autocast; resumes on the same loss curve; animate loads it."""
    import shutil

    from safetensors import safe_open

    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/tiny.yaml").read_text() +
                   "train:\n  batch_size: 2\n  checkpoint_every: 2\n  keep_last: 5\n  warmup_steps: 2\n"
                   "  mixed_precision: bf16\n  trainable: lora\n  frozen_dtype: bfloat16\n"
                   "  lora:\n    rank: 4\n    alpha: 4.0\n")
    run = tmp_path / "r"
    base = ["train", "--config", str(cfg), "--dataset", str(puppet_dataset), "--quiet", "--out", str(run),
            "--max-steps", "6"]
    first = cli(*base)
    assert first.returncode == 0, first.stderr
    straight = read_log(run)
    step2 = run / "checkpoints" / "step_0000002"
    with safe_open(str(step2 / "model" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        backbone = {f.get_tensor(k).dtype for k in f.keys() if not k.startswith(("cue_embed", "cue_fusion"))}
    with safe_open(str(step2 / "adapter" / "adapter.safetensors"), "pt") as f:
        trained = {f.get_tensor(k).dtype for k in f.keys()}
    assert backbone == {torch.bfloat16} and trained == {torch.float32}
    for later in ("step_0000004", "step_0000006"):
        shutil.rmtree(run / "checkpoints" / later)
    resumed = cli(*base, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [(e["step"], e["loss"]) for e in read_log(run)] == [(e["step"], e["loss"]) for e in straight]
    model = load_transformer(run)  # plain bf16 backbone + adapter, merged
    assert all(torch.isfinite(p).all() for p in model.parameters())
    wrong = cfg.read_text().replace("mixed_precision: bf16", "mixed_precision: 'no'")
    cfg.write_text(wrong)
    refused = cli_here(*base[:-4], "--out", str(tmp_path / "r2"), "--max-steps", "2")  # refused before training
    assert refused.returncode == 2 and "needs train.mixed_precision: bf16" in refused.stderr


def test_preprocess_checks_a_real_clips_person_at_the_clips_own_resolution(tmp_path, tiny_cfg):
    """A real clip without ground truth (a walking person in the middle of a 480 x 480 frame) is seen
    by the detectors at its own resolution, as `cues` sees a video: its reference frame's person check
    and its segmentation are not made after shrinking it to the model's 64 px, where the person
    detectors find no one; the cues still come out at 64 px. A frame without a person is refused."""
    from directanimator.assets import WALK_VIDEO
    from directanimator.data.format import ClipRecord
    from directanimator.data.preprocess import preprocess

    def dataset(name, person):
        frames = []
        for f in list(iter_frames(WALK_VIDEO))[:17]:
            canvas = np.full((480, 480, 3), 128, np.uint8)
            if person:
                canvas[80:400, 80:400] = cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA)
            frames.append(canvas)
        root = tmp_path / name
        (root / "clips" / "real").mkdir(parents=True)
        write_clip(root / "clips" / "real" / "video.mp4", frames, fps=15)
        record = ClipRecord("real", "train", 15.0, 480, 17)
        (root / "manifest.jsonl").write_text(json.dumps(record.__dict__) + "\n")
        return root

    import cv2

    from directanimator.video import iter_frames

    from ..media import write_clip

    report = preprocess(dataset("person", True), tiny_cfg(), progress=False)
    assert report["built"] == 1 and report["failed"] == 0, report["failures"]
    report = preprocess(dataset("empty", False), tiny_cfg(), progress=False)
    assert report["built"] == 0 and report["failures"][0]["error"].startswith(
        "InputError: no person found in the reference frame"), report


def test_cross_id_stage_says_when_no_pseudo_clip_passed_the_filter(tmp_path, tiny_cfg):
    """Not "run preprocess first" (it was run): the filter kept none of the pseudo clips, and the
    message says so, where the filter's report is, and what to change."""
    (tmp_path / "pseudo").mkdir()
    lines = [{"pseudo_id": f"p{i}", "source_clip": "c", "kept": False, "reasons": ["flicker"]} for i in range(3)]
    (tmp_path / "pseudo" / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(InputError, match=r"no pseudo clip of .* passed the quality filter \(3 made, 0 kept; "
                                         r".*filter_report.json says why"):
        CachedSamples(tmp_path, tiny_cfg(), "cross_id")


def test_a_run_starts_from_given_weights_and_scores_them_first(same_id_run, puppet_dataset, tiny_cfg, tmp_path):
    """train.init_from: the student starts from another run's weights (new optimizer, warm-up); the
    held-out validation scores the start at step 0, and that row equals the source run's last one
    (same weights, same triples, same seed). A start made for another model is refused."""
    import json

    from directanimator.errors import InputError
    from directanimator.train.trainer import train

    def rows(run):
        return [json.loads(x) for x in (run / "validation.jsonl").read_text().splitlines()][1:]

    cfg = tiny_cfg(max_steps=2, init_from=str(same_id_run))
    cfg.data.dataset = str(puppet_dataset)
    v = cfg.train.validation
    v.dataset, v.every, v.sample_steps = str(puppet_dataset), 2, 3
    out = tmp_path / "continued"
    train(cfg, out, progress=False)
    got, source = rows(out), rows(same_id_run)
    assert [r["step"] for r in got] == [0, 2]
    keys = [k for k in source[-1] if k.startswith("val_")]
    assert {k: got[0][k] for k in keys} == {k: source[-1][k] for k in keys}
    wider = tiny_cfg(max_steps=1, init_from=str(same_id_run))
    wider.data.dataset = str(puppet_dataset)
    wider.model.transformer.num_attention_heads = 2
    with pytest.raises(InputError, match="train.init_from .* num_attention_heads"):
        train(wider, tmp_path / "wider", progress=False)


def test_training_continues_from_the_shipped_model(puppet_dataset, tmp_path):
    """train.init_from: embedded starts from the shipped demo model, with its own config."""
    from directanimator.data.preprocess import preprocess
    from directanimator.model.loading import latest_checkpoint, load_transformer
    from directanimator.pipeline.checkpoints import EMBEDDED, resolve_checkpoint
    from directanimator.train.trainer import train

    _, cfg = resolve_checkpoint(None)
    cfg.data.dataset = str(puppet_dataset)
    t = cfg.train
    t.stage, t.teacher, t.init_from, t.max_steps, t.batch_size, t.lr, t.warmup_steps = \
        "cross_id", None, "embedded", 1, 2, 1e-5, 1
    t.validation.dataset, t.s2x.weight = None, 0.0  # no teacher: the denoising loss alone
    assert preprocess(puppet_dataset, cfg, progress=False)["failed"] == 0  # caches for the shipped config
    train(cfg, tmp_path / "continued", progress=False)
    shipped = load_transformer(EMBEDDED).float().state_dict()
    trained = load_transformer(latest_checkpoint(tmp_path / "continued")).state_dict()
    gaps = [float((trained[k] - v).abs().max()) for k, v in shipped.items()]
    assert max(gaps) < 1e-3 and max(gaps) > 0  # one small step away from the shipped weights
