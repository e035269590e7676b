"""`directanimator animate` and DirectAnimatorPipeline: end to end, windows, memory, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from directanimator.pipeline import DirectAnimatorPipeline, triangular_weights
from directanimator.windows import window_step, windows_covering
from directanimator.video import iter_frames, probe_video

from ..media import write_clip

from ..conftest import PY, ROOT, cli


def puppet_driving(tmp_path, frames=17, audio=True, seed=5):
    from directanimator.synth.render import render_clip

    clip = render_clip(900 + seed, 800 + seed, 700 + seed, frames, 64)
    path = tmp_path / f"driving_{frames}.mp4"
    write_clip(path, list(clip.frames), fps=15, audio=audio)
    return path, clip


def puppet_reference(tmp_path):
    from directanimator.synth.render import render_clip
    from directanimator.video import save_image

    clip = render_clip(901, 801, 702, 1, 64)
    path = tmp_path / "reference.png"
    save_image(path, clip.frames[0])
    return path, clip


def test_window_blender_gives_each_frame_once_in_order_as_soon_as_final():
    """WindowBlender: every frame comes out once, in order, right after the last window that touches
    it; a frame seen by one window is that window's frame; overlapping frames are the triangular-
    weighted mean (checked against the weights by hand)."""
    from directanimator.pipeline import WindowBlender

    n, window = 17, 9
    starts = windows_covering(n, window, 5, 4)
    blender = WindowBlender(starts, window, n)
    out = []
    rng = np.random.default_rng(0)
    windows = [rng.random((window, 2, 2, 3)).astype(np.float32) for _ in starts]
    for wi, frames in enumerate(windows):
        got = list(blender.add(wi, frames))
        nxt = starts[wi + 1] if wi + 1 < len(starts) else n
        assert [i for i, _ in got] == list(range(len(out), nxt))  # final exactly up to the next start
        out += got
    assert blender.done == n and [i for i, _ in out] == list(range(n))
    w = triangular_weights(window)
    for i, frame in out:
        cover = [(wi, i - s) for wi, s in enumerate(starts) if s <= i < s + window]
        want = sum(w[j] * windows[wi][j] for wi, j in cover) / sum(w[j] for _, j in cover)
        np.testing.assert_allclose(frame, want, rtol=1e-6)


def test_window_layout():
    assert windows_covering(5, 9, 4, 4) == [0]
    assert windows_covering(9, 9, 4, 4) == [0]
    assert window_step(9, 4, 4) == 4 and window_step(9, 1, 4) == 8 and window_step(17, 4, 4) == 12
    assert windows_covering(17, 9, 4, 4) == [0, 4, 8]
    assert windows_covering(33, 9, 2, 4) == [0, 4, 8, 12, 16, 20, 24]
    assert windows_covering(33, 9, 1, 4) == [0, 8, 16, 24]
    for n in (10, 33, 100):
        s = windows_covering(n, 9, 4, 4)
        assert s[-1] + 9 >= n > s[-1] and all(b - a == 4 for a, b in zip(s, s[1:]))
    w = triangular_weights(9)
    assert np.allclose(w, [0.05, 1.05, 2.05, 3.05, 4.05, 3.05, 2.05, 1.05, 0.05])


@pytest.mark.slow
def test_animate_end_to_end_keeps_frames_fps_audio_and_is_reproducible(same_id_run, tmp_path, cli_here):
    drv, _ = puppet_driving(tmp_path, frames=17, audio=True)
    ref, _ = puppet_reference(tmp_path)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.mp4"
        r = cli("animate", "--reference", str(ref), "--driving", str(drv), "--out", str(out), "--checkpoint",
                str(same_id_run), "--steps", "3", "--seed", "11", "--side-by-side", "--quiet")
        assert r.returncode == 0, r.stderr
        outs.append(out)
    info, src = probe_video(outs[0]), probe_video(drv)
    frames = [np.stack(list(iter_frames(o))) for o in outs]
    assert len(frames[0]) == 17 and info.fps == src.fps and info.has_audio
    assert np.array_equal(frames[0], frames[1])  # same seed, same video
    side = tmp_path / "a_side_by_side.mp4"
    assert probe_video(side).width == 4 * 64 and len(list(iter_frames(side))) == 17
    r = cli_here("animate", "--reference", str(ref), "--driving", str(drv), "--out", str(tmp_path / "c.mp4"),
                 "--checkpoint", str(same_id_run), "--steps", "3", "--seed", "12", "--quiet")  # two processes above
    assert not np.array_equal(np.stack(list(iter_frames(tmp_path / "c.mp4"))), frames[0])


def gt_pipeline_run(pipe, tmp_path, frames, steps=4, name="x"):
    from directanimator.cues.face import GivenFaceBoxes
    from directanimator.cues.segment import GivenMasks

    drv, clip = puppet_driving(tmp_path, frames=frames, audio=False)
    _, ref = puppet_reference(tmp_path)
    out = tmp_path / f"{name}.mp4"
    pipe(ref.frames[0], drv, out, steps=steps, seed=3, segmenter=GivenMasks(list(clip.masks.astype(np.float32))),
         face_detector=GivenFaceBoxes(clip.face_boxes, reference_box=ref.face_boxes[0]),
         reference_mask=ref.masks[0], progress=False)
    return np.stack(list(iter_frames(out))).astype(np.float32)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known defect: with the 4 x 256 demo model the "
                   "frame difference at window borders reaches 5.9 against at most 3.7 inside windows at 10 DDIM "
                   "steps (the earlier 4 x 128 model: 4.0 against 1.4); the pixel cross-fade does not hide it, and neither did shared "
                   "initial noise nor latent window fusion (inference.window_fusion: latent, measured against "
                   "the true motion in benchmarks/window_seams.py: joins 2.07x the error elsewhere against "
                   "the cross-fade's 1.73x at 10 DDIM steps). Part of the border jump is the codec's: with "
                   "4-frame latent groups every group boundary is a jump, and these borders are group boundaries")
def test_windows_join_without_seams(tmp_path):
    pipe = DirectAnimatorPipeline.from_pretrained(None)  # the embedded demo model: trained, so frames cohere
    video = gt_pipeline_run(pipe, tmp_path, frames=33, steps=10)
    assert len(video) == 33
    d = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))  # d[t] = |f(t+1) - f(t)|
    starts = windows_covering(33, pipe.config.model.frames, pipe.config.inference.window_overlap,
                              pipe.codec.temporal_factor)
    assert starts == [0, 4, 8, 12, 16, 20, 24]
    F = pipe.config.model.frames
    borders = sorted({s - 1 for s in starts[1:]} | {s + F - 1 for s in starts[:-1] if s + F - 1 < len(d)})
    inside = [d[t] for t in range(len(d)) if t not in borders]
    print(f"\nborder diffs {[round(float(d[t]), 2) for t in borders]}, inside: median {np.median(inside):.2f} "
          f"max {np.max(inside):.2f}")
    assert max(d[t] for t in borders) <= np.max(inside)


def test_window_seams_benchmark_runs_the_windows_it_is_given(monkeypatch):
    """benchmarks/window_seams.py --window/--overlap: the runs use that geometry (the starts printed come
    from the pipeline's config the runs use), every way of joining and the trivial answers are scored,
    and a geometry off the 4-frame latent grid is refused with one error line."""
    script = str(ROOT / "benchmarks" / "window_seams.py")
    r = subprocess.run([PY, script, "--clips", "1", "--frames", "17", "--window", "13", "--overlap", "1"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = r.stdout.splitlines()
    assert lines[0] == "windows of 13 frames overlapping by 1: starts [0, 12] on 17 frames"
    rows = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| ") and "---" not in line]
    assert rows[1:3] == ["pixel", "latent"] and sum(row.startswith("trivial: ") for row in rows) == 3
    paired = [line for line in lines if "against the cross-fade at the joins, clip by clip" in line]
    assert len(paired) == 1 and paired[0].startswith("latent against") and " of 1 clips" in paired[0]
    from ..scripts import load_benchmark

    window_seams = load_benchmark("window_seams")
    sign_test = window_seams.sign_test
    assert sign_test(0, 10) == sign_test(10, 10) == 2 / 1024 and sign_test(5, 10) == 1.0
    assert abs(sign_test(10, 40) - 0.002221) < 1e-6  # 2 P(X <= 10), X ~ Binomial(40, 1/2)
    # the refusals in this process (a process each only repeats the imports): sys.exit's message is
    # the script's one stderr line, with exit status 1
    for bad, what in ((["--overlap", "3"], "--overlap"), (["--window", "10"], "--window"),
                      (["--overlap", "9"], "--overlap")):
        monkeypatch.setattr(sys, "argv", [script, "--clips", "1", *bad])
        with pytest.raises(SystemExit) as exit_:
            window_seams.main()
        assert isinstance(exit_.value.code, str) and exit_.value.code.startswith(f"error: {what} must"), exit_.value


@pytest.mark.slow
def test_peak_memory_flat_for_a_four_times_longer_video(same_id_run, tmp_path):
    code = """
import resource, sys, numpy as np
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.pipeline.test_animate import gt_pipeline_run
from directanimator.pipeline import DirectAnimatorPipeline
pipe = DirectAnimatorPipeline.from_pretrained({run!r})
gt_pipeline_run(pipe, Path({tmp!r}), {frames}, steps=2, name="m{frames}")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    peaks = {}
    for frames in (33, 132):
        r = subprocess.run([PY, "-c", code.format(root=str(ROOT), run=str(same_id_run), tmp=str(tmp_path),
                                                  frames=frames)], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-1500:]
        peaks[frames] = int(r.stdout.strip().splitlines()[-1]) / 1024
    print(f"\npeak RSS: 33 frames {peaks[33]:.0f} MiB, 132 frames {peaks[132]:.0f} MiB")
    assert peaks[132] < peaks[33] * 1.10


def test_sampler_recovers_x0_with_an_oracle_velocity():
    """The denoising loop (both schedulers) is exact: with the true v for a known x0, it returns x0."""
    import torch

    from directanimator.pipeline import make_inference_scheduler

    pipe = DirectAnimatorPipeline.from_pretrained(None)
    x0 = torch.randn(1, 3, 24, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = torch.randn(1, 1, 24, 16, 16, generator=torch.Generator().manual_seed(2))
    for kind, residual in (("ddim", False), ("dpm", False), ("ddim", True)):
        pipe.scheduler = sched = make_inference_scheduler(kind)
        target = x0 - ref if residual else x0  # model.reference_residual: the difference is denoised

        class Oracle(torch.nn.Module):
            config = {"reference_layout": "all_frames", "reference_residual": residual}

            def forward(self, x, enc, t, **cues):
                a = sched.alphas_cumprod[t.long()].float().view(-1, 1, 1, 1, 1)
                v = (a.sqrt() * x[:, :, :24] - target) / (1 - a).clamp_min(1e-12).sqrt()
                return type("Out", (), {"sample": v})()

        real, pipe.transformer = pipe.transformer, Oracle()
        cues = {k: torch.zeros(1, 3, c, 16, 16) for k, c in
                (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
        out = pipe.denoise(ref, cues, torch.Generator().manual_seed(1), 20, 1.0)
        pipe.transformer = real
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-5)


def test_fused_windows_recover_x0_with_an_oracle_velocity(tmp_path):
    """Latent window fusion's bookkeeping is exact: windows whose true v agree on their shared latent
    frames (the video's latents k + 1 .. k + n - 1 for the window starting at frame 4k) give back the
    whole sequence, with both schedulers, its buffers in files, stepped in chunks."""
    import torch

    from directanimator.model.sampling import sample_fused_latents
    from directanimator.windows import fused_window_layout
    from directanimator.pipeline import make_inference_scheduler

    layout, total = fused_window_layout([0, 4, 8, 12], 9, 4)
    assert layout == [[0, 1, 2], [6, 2, 3], [7, 3, 4], [8, 4, 5]] and total == 9
    x0 = torch.randn(total, 24, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = torch.zeros(1, 1, 24, 16, 16)
    for kind in ("ddim", "dpm"):
        sched = make_inference_scheduler(kind)

        class Oracle(torch.nn.Module):
            config = {"reference_layout": "all_frames", "reference_residual": False}

            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(1))  # a dtype for the sampler to read

            def forward(self, x, enc, t, **cues):
                window = int(cues["pose_latents"][0, 0, 0, 0, 0])  # the window id, planted in its cues
                target = x0[layout[window]][None]
                a = sched.alphas_cumprod[t.long()].float().view(-1, 1, 1, 1, 1)
                v = (a.sqrt() * x[:, :, :24] - target) / (1 - a).clamp_min(1e-12).sqrt()
                return type("Out", (), {"sample": v})()

        def cues(w):
            return {"pose_latents": torch.full((1, 3, 24, 16, 16), float(w)), "face_latents": torch.zeros(1, 3, 24, 16, 16),
                    "body_mask": torch.zeros(1, 3, 1, 16, 16), "face_mask": torch.zeros(1, 3, 1, 16, 16)}

        work = tmp_path / kind
        work.mkdir()
        out, got_layout = sample_fused_latents(Oracle(), sched, ref, cues, layout, total, torch.zeros(1, 8, 32), 20,
                                               torch.Generator().manual_seed(1), workdir=work)
        assert isinstance(out, np.memmap) and got_layout == layout
        torch.testing.assert_close(torch.from_numpy(np.array(out)), x0, rtol=0, atol=1e-4)
        for fused_steps in (0, 7):  # fused at the first steps only, then each window alone: its own x0
            (work / str(fused_steps)).mkdir()
            out, got_layout = sample_fused_latents(Oracle(), sched, ref, cues, layout, total, torch.zeros(1, 8, 32),
                                                   20, torch.Generator().manual_seed(1), workdir=work / str(fused_steps),
                                                   fused_steps=fused_steps)
            assert got_layout == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
            for wi, idx in enumerate(layout):
                torch.testing.assert_close(torch.from_numpy(np.array(out[got_layout[wi]])), x0[idx], rtol=0, atol=1e-4)


def test_pipeline_save_and_load(same_id_run, tmp_path):
    pipe = DirectAnimatorPipeline.from_pretrained(same_id_run)
    pipe.save_pretrained(tmp_path / "p")
    again = DirectAnimatorPipeline.from_pretrained(tmp_path / "p")
    import torch

    for (k, a), (_, b) in zip(pipe.transformer.state_dict().items(), again.transformer.state_dict().items()):
        assert torch.equal(a, b), k
    assert again.config.model == pipe.config.model and again.config.cues == pipe.config.cues
    assert again.config.data.dataset is None  # no local paths in a saved pipeline
    assert again.config.train.teacher is None and again.config.train.validation.dataset is None
    # stored in float16 (to keep a shipped model small), it loads and runs in float32 on the CPU
    pipe.transformer.to(torch.float16)
    pipe.save_pretrained(tmp_path / "half")
    pipe.transformer.to(torch.float32)
    half = DirectAnimatorPipeline.from_pretrained(tmp_path / "half")
    assert {p.dtype for p in half.transformer.parameters()} == {torch.float32}
    for (k, a), (_, b) in zip(pipe.transformer.state_dict().items(), half.transformer.state_dict().items()):
        assert torch.equal(a.half().float(), b), k


@pytest.mark.slow
def test_animate_bad_inputs(same_id_run, tmp_path, cli_here):
    drv, _ = puppet_driving(tmp_path, frames=9, audio=False)
    ref, _ = puppet_reference(tmp_path)
    base = ["animate", "--reference", str(ref), "--driving", str(drv), "--steps", "2", "--quiet"]

    def run(*extra, out="o.mp4"):  # in this process; the first case as a real process
        return cli_here(*base, "--out", str(tmp_path / out), *extra)

    r = cli(*base, "--out", str(tmp_path / "o.mp4"), "--checkpoint", str(tmp_path / "missing"))
    assert r.returncode == 2 and "checkpoint not found" in r.stderr and str(tmp_path / "missing") in r.stderr
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    shutil.copytree(same_id_run, broken)
    weights = next((broken / "checkpoints").glob("step_*/model/diffusion_pytorch_model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    r = run("--checkpoint", str(broken))
    assert r.returncode == 2 and "diffusion_pytorch_model.safetensors" in r.stderr, r.stderr
    other = tmp_path / "other"
    shutil.copytree(same_id_run, other)
    cfg = other / "config.yaml"
    cfg.write_text(cfg.read_text().replace("num_layers: 4", "num_layers: 2"))
    r = run("--checkpoint", str(other))
    assert r.returncode == 2 and "another config" in r.stderr
    r = cli_here("animate", "--reference", str(tmp_path / "nope.png"), "--driving", str(drv), "--out",
                 str(tmp_path / "o.mp4"), "--checkpoint", str(same_id_run))
    assert r.returncode == 2 and "reference image not found" in r.stderr
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"\x00" * 500)
    r = cli_here("animate", "--reference", str(ref), "--driving", str(bad_video), "--out", str(tmp_path / "o.mp4"),
                 "--checkpoint", str(same_id_run))
    assert r.returncode == 2 and r.stderr.startswith("error:")
    r = run("--checkpoint", str(same_id_run), "--size", "70")
    assert r.returncode == 0 and "rounded to 72" in r.stdout, r.stderr
    r = run("--checkpoint", str(same_id_run))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    # values checked before any work, one line each (they used to run at 64 px, print two
    # contradicting lines, end in a diffusers ValueError, or write an all-black video)
    for extra, says in ((("--size", "0"), "--size must lie between 32 and 256 pixels for this model (trained at 64), got 0"),
                        (("--size", "-64"), "--size must lie between 32 and 256 pixels for this model (trained at 64), "
                                            "got -64"),
                        (("--steps", "100000"), "--steps must lie between 1 and 1000"),
                        (("--guidance", "nan"), "--guidance must be a finite number >= 1")):
        r = run("--checkpoint", str(same_id_run), *extra, out="v.mp4")
        assert r.returncode == 2 and r.stderr.strip() == f"error: {says}" or says in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "rounded" not in r.stdout and not (tmp_path / "v.mp4").exists()
    assert not list(tmp_path.glob(".directanimator-*"))  # no temporary leftovers
    assert len(r.stderr.strip().splitlines()) == 1


def test_classifier_free_guidance_on_the_cues():
    import torch

    pipe = DirectAnimatorPipeline.from_pretrained(None)
    g = torch.Generator().manual_seed(0)
    cues = {k: torch.randn(1, 3, c, 16, 16, generator=g) for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    ref = torch.randn(1, 1, 24, 16, 16, generator=g)
    calls = []
    real_forward = pipe.transformer.forward

    def counting(*a, **k):
        calls.append(float(k["pose_latents"].abs().sum()))
        return real_forward(*a, **k)

    pipe.transformer.forward = counting
    plain = pipe.denoise(ref, cues, torch.Generator().manual_seed(1), 3, 1.0)
    assert len(calls) == 3
    guided = pipe.denoise(ref, cues, torch.Generator().manual_seed(1), 3, 3.0)
    assert len(calls) == 3 + 6 and calls[4] == 0.0  # every step adds one pass with the cues dropped
    assert not torch.allclose(plain, guided)


def test_guidance_formula_and_dpm_steps_follow_diffusers():
    """The one-step helpers of model/sampling.py: guided v = v_uncond + s (v_cond - v_uncond), the
    cues all zeroed for v_uncond; and the DPM loop hands each step the previous x0 prediction, as
    diffusers' CogVideoX pipelines do (an oracle velocity cannot tell: a first-order step is exact then)."""
    import torch

    from directanimator.model.sampling import guided_velocity, sample_latents
    from directanimator.pipeline import make_inference_scheduler

    class Stub(torch.nn.Module):
        config = {"reference_layout": "all_frames", "reference_residual": False}

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x, enc, t, **cues):  # depends on the latents, the timestep and the cues
            return type("Out", (), {"sample": 0.3 * x[:, :, :24] + 1e-3 * t.float().view(-1, 1, 1, 1, 1)
                                    + cues["pose_latents"].mean() + 2 * cues["face_mask"].mean()})()

    g = torch.Generator().manual_seed(0)
    cues = {k: torch.rand(1, 3, c, 16, 16, generator=g) + 0.5 for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    ref = torch.randn(1, 1, 24, 16, 16, generator=g)
    sched = make_inference_scheduler("dpm")
    sched.set_timesteps(4)
    lat = torch.randn(1, 3, 24, 16, 16, generator=g)
    model, t = Stub(), sched.timesteps[1]
    enc = torch.zeros(1, 8, 32)
    v_c = guided_velocity(model, lat, t, sched, ref, enc, cues, 1.0)
    v_u = guided_velocity(model, lat, t, sched, ref, enc, {k: torch.zeros_like(c) for k, c in cues.items()}, 1.0)
    torch.testing.assert_close(guided_velocity(model, lat, t, sched, ref, enc, cues, 3.0), v_u + 3.0 * (v_c - v_u))
    assert (v_c - v_u).abs().min() > 0.5  # the cues matter to the stub

    out = sample_latents(model, sched, ref, cues, enc, 4, torch.Generator().manual_seed(5))
    # diffusers' CogVideoXImageToVideoPipeline's loop, written out
    gen = torch.Generator().manual_seed(5)
    x = torch.randn((1, 3, 24, 16, 16), generator=gen) * sched.init_noise_sigma
    sched.set_timesteps(4)
    old = None
    for i, t in enumerate(sched.timesteps):
        inp = torch.cat([sched.scale_model_input(x, t), ref.expand(-1, 3, -1, -1, -1)], dim=2)
        v = model(inp, enc, t.expand(1), **cues).sample
        x, old = sched.step(v, old, t, sched.timesteps[i - 1] if i > 0 else None, x, generator=gen, return_dict=False)
    torch.testing.assert_close(out, x)


def test_inference_never_imports_training_or_dataset_code():
    """The brief's rule: model/, cues/, the pipeline, the shared windows module and the web page import
    nothing from train/ or data/ (nor the puppet world, synth/), neither at import time nor while
    loading the embedded model and animating with it."""
    import ast

    root = ROOT / "directanimator"
    files = [*root.glob("model/*.py"), *root.glob("cues/*.py"), *root.glob("pipeline/*.py"), root / "windows.py",
             root / "ui.py"]
    assert len([f for f in files if f.parent.name == "pipeline"]) >= 5
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = ("." * node.level) + (node.module or "")
                parts = target.split(".")
                assert not {"train", "data", "synth"} & set(parts), f"{f.name} imports {target}"
    code = ("import sys, numpy as np\n"
            "from directanimator.pipeline import DirectAnimatorPipeline\n"
            "pipe = DirectAnimatorPipeline.from_pretrained(None)\n"
            f"pipe({str(ROOT / 'directanimator' / 'assets' / 'astronaut.jpg')!r}, "
            f"{str(ROOT / 'directanimator' / 'assets' / 'walk.mp4')!r}, sys.argv[1], steps=1, progress=False)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('directanimator.train', 'directanimator.data', "
            "'directanimator.synth'))))\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, str(Path(tmp) / "a.mp4")], capture_output=True, text=True,
                             check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_animate_device_and_dtype(tmp_path, cli_here):
    """--device/--dtype: bfloat16 on the CPU runs end to end and stays close to float32; a CUDA
    device where there is none is one error line (the command line in this process)."""
    import torch

    drv, _ = puppet_driving(tmp_path, frames=9, audio=False)
    ref, _ = puppet_reference(tmp_path)
    outs = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.mp4"
        r = cli_here("animate", "--reference", str(ref), "--driving", str(drv), "--out", str(out), "--steps", "2",
                     "--device", "cpu", "--dtype", dtype, "--quiet")
        assert r.returncode == 0, r.stderr
        outs[dtype] = np.stack(list(iter_frames(out))).astype(np.float32)
    assert outs["bfloat16"].shape == outs["float32"].shape
    assert np.abs(outs["bfloat16"] - outs["float32"]).mean() < 6.0  # levels of 255
    pipe = DirectAnimatorPipeline.from_pretrained(None, dtype="bfloat16")
    assert next(pipe.transformer.parameters()).dtype == torch.bfloat16
    if not torch.cuda.is_available():
        r = cli_here("animate", "--reference", str(ref), "--driving", str(drv), "--out", str(tmp_path / "g.mp4"),
                     "--device", "cuda", "--quiet")
        assert r.returncode == 2 and r.stderr.strip() == "error: --device cuda: no CUDA GPU is visible to torch on this machine"


def test_background_weight():
    from directanimator.pipeline import background_weight

    body = np.zeros((64, 64), np.float32)
    body[20:40, 30:34] = 0.25  # grid-softened coverage counts wherever it is above 0
    ref = np.zeros((64, 64), bool)
    ref[10:20, 10:14] = True
    w = background_weight(body, ref, margin=0.0)
    assert set(np.unique(w)) == {0.0, 1.0} and w[25, 31] == 1 and w[15, 12] == 1 and w[50, 50] == 0
    w = background_weight(body, ref, margin=4 / 64)  # 4 px kept, feathered over the next 4 px
    assert w[25, 37] == 1.0 and 0.0 < w[25, 39] < 1.0 and w[25, 43] == 0.0 and w[60, 60] == 0.0
    assert np.all(background_weight(np.zeros_like(body), np.zeros_like(ref), 0.05) == 1.0)  # nobody: no change


def test_keep_background_gives_the_reference_pixels_away_from_the_person(tmp_path):
    """inference.keep_background: far from the person (in this frame and in the reference) the output
    is the reference photo itself (as the video encoder gives it back), nearer the person the model's."""
    from directanimator.pipeline import background_weight

    pipe = DirectAnimatorPipeline.from_pretrained(None)
    pipe.config.inference.keep_background = False
    plain = gt_pipeline_run(pipe, tmp_path, frames=9, steps=2, name="plain")
    pipe.config.inference.keep_background = True
    pipe.config.inference.keep_background_margin = 0.05
    kept = gt_pipeline_run(pipe, tmp_path, frames=9, steps=2, name="kept")
    _, ref = puppet_reference(tmp_path)
    # the driving person is moved onto the reference person (eqs 9-12): far = 14 px or more beyond the
    # reference person's box (an 8 px grid cell of the Location Cue + 2 x 3.2 px margin and feather)
    ys, xs = np.nonzero(ref.masks[0])
    far = np.ones(ref.frames[0].shape[:2], bool)
    far[max(0, ys.min() - 14):ys.max() + 15, max(0, xs.min() - 14):xs.max() + 15] = False
    assert far.mean() > 0.3
    from directanimator.video import VideoWriter

    writer = VideoWriter(tmp_path / "still.mp4", 15, 64, 64, crf=18)  # the reference through the same encoder
    for _ in range(9):
        writer.write(ref.frames[0])
    writer.close()
    reference = np.stack(list(iter_frames(tmp_path / "still.mp4"))).astype(np.float32)
    err_kept = np.abs(kept[:, far] - reference[:, far]).mean()
    err_plain = np.abs(plain[:, far] - reference[:, far]).mean()
    print(f"\nmean |output - reference| far from the person: kept {err_kept:.2f}, plain {err_plain:.2f}")
    assert err_kept < 1.5 and err_plain > 2 * err_kept
    assert not np.array_equal(kept, plain)


def test_the_text_encoder_is_released_after_the_prompt_is_encoded(tmp_path):
    """inference.release_text_encoder: the pipeline encodes the prompt, then frees T5's weights."""
    pipe = DirectAnimatorPipeline.from_pretrained(None)
    real = pipe.text_encoder
    calls = []

    class Encoder:
        def __call__(self, prompts, device="cpu", dtype=None):
            calls.append("encode")
            return real(prompts, device=device)

        def release(self):
            calls.append("release")

    pipe.text_encoder = Encoder()
    gt_pipeline_run(pipe, tmp_path, frames=9, steps=1, name="rel")
    assert calls[:2] == ["encode", "release"]
    calls.clear()
    pipe.config.inference.release_text_encoder = False
    gt_pipeline_run(pipe, tmp_path, frames=9, steps=1, name="keep")
    assert "release" not in calls and calls


def test_memory_options_give_the_same_frames(tmp_path):
    """inference.memory: group offload denoises exactly as the plain model; fp8 weight storage within
    fp8's rounding (latents, and frames of a whole run); auto on a CPU is none. (Latents are compared:
    two runs in one process can differ by under a level before the video encoder, which then
    amplifies it, so frames are compared with a tolerance.)"""
    import torch

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 1, 24, 16, 16, generator=g)
    cues = {k: torch.randn(1, 3, c, 16, 16, generator=g) for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    lat, frames = {}, {}
    for option in ("none", "fp8", "group_offload"):
        pipe = DirectAnimatorPipeline.from_pretrained(None, memory=option)
        lat[option] = pipe.denoise(ref, cues, torch.Generator().manual_seed(1), 2, 1.0)
        frames[option] = gt_pipeline_run(pipe, tmp_path, frames=9, steps=2, name=option)
        if option == "fp8":
            assert torch.float8_e4m3fn in {p.dtype for p in pipe.transformer.parameters()}
    assert torch.equal(lat["group_offload"], lat["none"])
    rel = float((lat["fp8"] - lat["none"]).norm() / lat["none"].norm())
    diff = np.abs(frames["fp8"] - frames["none"])
    print(f"\nfp8 against none: latents {rel:.4f} relative, frames mean {diff.mean():.2f} levels")
    assert 0 < rel < 0.05 and diff.mean() < 3.0
    assert np.abs(frames["group_offload"] - frames["none"]).mean() < 1.0
    assert DirectAnimatorPipeline.from_pretrained(None).apply_memory_option("auto") == "none"
    with pytest.raises(Exception, match="memory option"):
        DirectAnimatorPipeline.from_pretrained(None, memory="lots")


def test_out_size_writes_a_larger_video_of_the_same_frames(tmp_path):
    """`animate --out-size`: the written video's longer side, frames upscaled (Lanczos) from the
    working size, and the side-by-side's panels with it; the picture is the working-size result's;
    bad values are one error line."""
    import cv2

    pipe = DirectAnimatorPipeline.from_pretrained(None)
    from directanimator.cues.detectors import Detectors

    drv, clip = puppet_driving(tmp_path, frames=9, audio=False)
    _, ref = puppet_reference(tmp_path)
    given = Detectors.from_annotations({"masks": clip.masks, "face_boxes": clip.face_boxes}, ref).kwargs()
    small = pipe(ref.frames[0], drv, tmp_path / "a.mp4", steps=2, seed=1, progress=False, return_frames=True, **given)
    big = pipe(ref.frames[0], drv, tmp_path / "b.mp4", steps=2, seed=1, progress=False, return_frames=True,
               out_size=160, side_by_side=tmp_path / "b_side_by_side.mp4", **given)
    assert (big.width, big.height) == (160, 160) and probe_video(tmp_path / "b.mp4").width == 160
    side = probe_video(tmp_path / "b_side_by_side.mp4")  # the side-by-side grows with the video
    assert (side.width, side.height) == (4 * 160, 160)
    assert big.frames.shape == (9, 160, 160, 3)
    want = np.stack([cv2.resize(f, (160, 160), interpolation=cv2.INTER_LANCZOS4) for f in small.frames])
    assert np.array_equal(big.frames, want)
    r = cli("animate", "--reference", str(tmp_path / "reference.png"), "--driving", str(drv), "--out",
            str(tmp_path / "c.mp4"), "--out-size", "5", "--quiet")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --out-size") and len(r.stderr.strip().splitlines()) == 1


def test_partly_fused_windows_through_the_pipeline(tmp_path):
    """inference.fused_steps: fused at every step when it covers all steps (the same frames as None);
    with 0 only the initial noise is shared, then each window alone: another video. (The driving clip
    is written once: two libx264 encodes of the same frames by tests/media.py in one process were seen
    to differ by a few levels after other work in the process (not traced further), which is why
    repeated gt_pipeline_run calls, which rewrite the clip, drift slightly.)"""
    from dataclasses import replace

    from directanimator.cues.face import GivenFaceBoxes
    from directanimator.cues.segment import GivenMasks

    drv, clip = puppet_driving(tmp_path, frames=17, audio=False)
    _, ref = puppet_reference(tmp_path)
    pipe = DirectAnimatorPipeline.from_pretrained(None)
    base = pipe.config
    videos = {}
    for fused in (None, 2, 0):
        pipe.config = replace(base, inference=replace(base.inference, window_fusion="latent", fused_steps=fused))
        r = pipe(ref.frames[0], drv, tmp_path / f"f{fused}.mp4", steps=2, seed=3, progress=False, return_frames=True,
                 segmenter=GivenMasks(list(clip.masks.astype(np.float32))),
                 face_detector=GivenFaceBoxes(clip.face_boxes, reference_box=ref.face_boxes[0]),
                 reference_mask=ref.masks[0])
        videos[fused] = np.stack(r.frames)
    pipe.config = base
    assert len(videos[None]) == 17
    assert np.array_equal(videos[None], videos[2])
    assert not np.array_equal(videos[None], videos[0])


def test_settings_no_model_serves_are_refused_before_any_work(tmp_path):
    """A working size beyond what the checkpoint serves (4x its trained size) and a seed out of range
    are one error line before the model's weights load and before anything is written; a bad --out
    likewise, before the pipeline is imported (no seconds of imports first)."""
    drv, _ = puppet_driving(tmp_path, frames=9, audio=False)
    ref = ROOT / "directanimator" / "assets" / "astronaut.jpg"
    out = tmp_path / "out" / "a.mp4"
    for args, message in ((["--size", "4096"], "error: --size must lie between 32 and 256 pixels for this model "
                                                "(trained at 64), got 4096; for a bigger video pass --out-size"),
                          (["--seed", "99999999999999999999"], "error: --seed must be an integer from 0 to 4294967295"),
                          (["--seed", "-1"], "error: --seed must be an integer from 0 to 4294967295")):
        r = cli("animate", "--reference", str(ref), "--driving", str(drv), "--out", str(out), "--quiet", *args)
        assert r.returncode == 2 and r.stderr.startswith(message) and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.parent.exists() or not any(out.parent.iterdir())
    code = ("import sys; from directanimator.cli import main; main(['animate', '--reference', 'r.png', '--driving', "
            "'d.mp4', '--out', '/etc/passwd/a.mp4']); print(sorted(m for m in sys.modules if m.startswith(('diffusers', "
            "'directanimator.pipeline', 'directanimator.model'))))")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stderr.startswith("error: cannot write to /etc/passwd") and r.stdout.strip() == "[]", (r.stdout, r.stderr)


def test_guidance_without_cue_dropout_warns_once(tmp_path, capsys):
    """--guidance above 1 on a model trained without cue dropout: one warning line, in the result's
    warnings (the CLI prints them, the page shows them), not printed by the pipeline itself."""
    from directanimator.config import Config, guidance_warning
    from directanimator.cues.detectors import Detectors

    cfg = Config()
    assert guidance_warning(cfg, 1.0) is None and guidance_warning(cfg, 2.5).startswith("warning: --guidance 2.5")
    cfg.train.cue_dropout = 0.1
    assert guidance_warning(cfg, 2.5) is None
    drv, clip = puppet_driving(tmp_path, frames=9, audio=False)
    _, ref = puppet_reference(tmp_path)
    given = Detectors.from_annotations({"masks": clip.masks, "face_boxes": clip.face_boxes}, ref).kwargs()
    pipe = DirectAnimatorPipeline.from_pretrained(None)
    result = pipe(ref.frames[0], drv, tmp_path / "g.mp4", steps=1, guidance_scale=2.0, progress=False, **given)
    assert [w for w in result.warnings if "--guidance" in w] == [guidance_warning(pipe.config, 2.0)]
    assert result.as_dict()["warnings"] == result.warnings and capsys.readouterr().err == ""


def test_a_killed_runs_working_folder_is_removed_by_the_next_run(tmp_path):
    """animate works in a hidden `.directanimator-PID-*` folder beside its output; one left by a process
    that is no longer running (SIGKILL, power cut) is removed when the next run starts there; a live
    process's folder and unrelated hidden files stay."""
    from directanimator.storage import MARKER, work_dir

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".directanimator-{dead.pid}-abc123"
    (stale / "window_cues").mkdir(parents=True)
    (stale / "window_cues" / "big.bin").write_bytes(b"0" * 1000)
    live = tmp_path / f".directanimator-{os.getppid()}-def456"
    live.mkdir()
    (tmp_path / MARKER).write_text("x")
    with work_dir(tmp_path) as mine:
        assert Path(mine).name.startswith(f".directanimator-{os.getpid()}-")
        assert not stale.exists() and live.is_dir() and (tmp_path / MARKER).is_file()
    assert not Path(mine).exists()
