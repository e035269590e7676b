"""Sharded runs resume: DeepSpeed ZeRO-2 launched for real with 2 CPU processes through the
trainer, and FSDP2 (which accelerate runs only on GPUs) through the same save/load functions on 2 CPU
processes; per-rank safetensors, no pickles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from directanimator.errors import InputError
from directanimator.train.sharded import load_shard, save_shard, shard_file
from directanimator.train.trainer import load_transformer, weights_digest

from ..conftest import PY, ROOT, read_log

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def curve(log):
    return [(e["step"], e["loss"], e["lr"], e["grad_norm"]) for e in log]


@pytest.mark.slow
@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_deepspeed_zero2_two_processes_resume_on_the_same_loss_curve(puppet_dataset, tmp_path, trainable):
    import deepspeed  # noqa: F401 (the dev extra installs it; a missing install fails here, not skips)

    acc = yaml.safe_load((ROOT / "configs/accelerate/deepspeed_zero2_8gpu.yaml").read_text())
    acc["num_processes"] = 2
    acc_path = tmp_path / "zero2_2proc.yaml"
    acc_path.write_text(yaml.safe_dump(acc))
    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/tiny.yaml").read_text() +
                   "train:\n  batch_size: 2\n  checkpoint_every: 2\n  keep_last: 5\n  warmup_steps: 2\n"
                   f"  lr_schedule: cosine\n  trainable: {trainable}\n  lora:\n    rank: 4\n    alpha: 4.0\n")
    out = tmp_path / "run"
    cmd = [str(Path(PY).parent / "accelerate"), "launch", "--config_file", str(acc_path), "-m", "directanimator.train",
           "--config", str(cfg), "--dataset", str(puppet_dataset), "--out", str(out), "--max-steps", "6", "--quiet"]
    extensions = tmp_path / "torch_extensions"  # where DeepSpeed would JIT-compile its kernels
    env = dict(ENV, TORCH_EXTENSIONS_DIR=str(extensions))
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # without CUDA the all-reduce goes through gloo: no shared-memory kernel compiled (2.4 min of gcc)
    assert not (extensions / "deepspeed_shm_comm").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is None  # the gathered-weights digest
    step2 = out / "checkpoints" / "step_0000002"
    if trainable == "full":
        assert summary["weights_sha1"] == weights_digest(load_transformer(out))
    else:  # model/ holds the plain backbone under its own names, adapter/ the LoRA and cue weights
        from safetensors import safe_open

        with safe_open(str(step2 / "model" / "diffusion_pytorch_model.safetensors"), "pt") as f:
            names = set(f.keys())
        assert names == set(load_transformer(step2 / "model").state_dict())
        assert json.loads((step2 / "adapter" / "adapter.json").read_text())["mode"] == "lora"
        load_transformer(out)  # plain weights + adapter, merged
    assert json.loads((step2 / "state.json").read_text())["backend"] == "deepspeed"
    assert shard_file(step2, 0, 2).is_file() and shard_file(step2, 1, 2).is_file()
    assert not (step2 / "optimizer.safetensors").exists()  # the partitions, not a gathered copy
    straight = read_log(out)
    assert [e["step"] for e in straight] == [1, 2, 3, 4, 5, 6]

    # a single process cannot resume it: one clear line
    single = subprocess.run([PY, "-m", "directanimator", "train", "--config", str(cfg), "--dataset",
                             str(puppet_dataset), "--out", str(out), "--max-steps", "6", "--resume", "--quiet"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 2 and "same accelerate config and number of processes" in single.stderr
    assert "Traceback" not in single.stderr

    # as if killed after step 3: the checkpoints after step 2 and the summary gone, then --resume
    for later in ("step_0000004", "step_0000006"):
        shutil.rmtree(out / "checkpoints" / later)
    (out / "summary.json").unlink()
    r = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert curve(read_log(out)) == curve(straight)
    assert json.loads((out / "summary.json").read_text())["weights_sha1"] == summary["weights_sha1"]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["cogvideox", "wan"])
def test_fsdp2_shards_resume_two_cpu_processes_bit_for_bit(tmp_path, backbone):
    """FSDP2 per transformer block (CogVideoXBlock, or WanTransformerBlock on the tiny Wan2.2-TI2V
    folder): the shards of a run stopped after step 2 resume to the same losses and weights."""
    wan = []
    if backbone == "wan":
        from ..wan_folder import make_tiny_wan_folder

        wan = [str(make_tiny_wan_folder(tmp_path / "Wan2.2-TI2V-5B", "wan2.2-ti2v"))]

    def launch(mode, result):
        r = subprocess.run([PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                            str(ROOT / "tests/fsdp2_worker.py"), mode, str(tmp_path / "ckpt"), str(result), *wan],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(result.read_text())

    a = launch("straight", tmp_path / "a.json")
    assert a["parameter_types"] == ["DTensor"] and a["world"] == 2  # really sharded
    assert shard_file(tmp_path / "ckpt", 0, 2).is_file() and shard_file(tmp_path / "ckpt", 1, 2).is_file()
    b = launch("resume", tmp_path / "b.json")
    assert b["losses"] == a["losses"][2:]
    assert b["weights_sha1"] == a["weights_sha1"]


def test_shards_refuse_another_world_size_or_backend(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "shards").mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"group.0.fp32": torch.zeros(3)}, str(shard_file(folder, 0, 2)), metadata={"backend": "deepspeed"})
    with pytest.raises(InputError, match="another number of processes"):
        load_shard(folder, "deepspeed", None, None, 0, 4)
    with pytest.raises(InputError, match="written under deepspeed, this run uses fsdp"):
        load_shard(folder, "fsdp", None, None, 0, 2)
    with pytest.raises(InputError, match="only ZeRO-1/2"):
        save_shard(folder, "deepspeed", None, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 0, 1)
    from types import SimpleNamespace

    zero3 = SimpleNamespace(optimizer=SimpleNamespace(fp32_partitioned_groups_flat=[]))  # accelerate's wrapper
    with pytest.raises(InputError, match="ZeRO stage 3 checkpoints are not supported"):
        save_shard(folder, "deepspeed", None, zero3, 0, 1)
    FullyShardedDataParallel = type("FullyShardedDataParallel", (torch.nn.Module,), {})  # FSDP1's wrapper, by name
    fsdp1 = torch.nn.Sequential(FullyShardedDataParallel())
    with pytest.raises(InputError, match="FSDP1 checkpoints are not supported"):
        save_shard(folder, "fsdp", fsdp1, None, 0, 1)


def test_objective_feeds_a_bf16_student_as_deepspeed_holds_it(tiny_cfg):
    """Under DeepSpeed bf16 the engine's weights are bf16 and accelerate does not autocast: the objective
    gives each model its inputs in its own weight dtype (the fp32 teacher keeps fp32 inputs)."""
    from directanimator.model import build_transformer
    from directanimator.train.losses import Same2XObjective, make_scheduler

    torch.manual_seed(0)
    student = build_transformer(tiny_cfg().model, 24).to(torch.bfloat16)
    teacher = build_transformer(tiny_cfg().model, 24)
    g = torch.Generator().manual_seed(0)
    lat, noise = torch.randn(1, 3, 24, 16, 16, generator=g), torch.randn(1, 3, 24, 16, 16, generator=g)
    x = torch.cat([lat, torch.randn(1, 3, 24, 16, 16, generator=g)], dim=2)
    cues = {k: torch.randn(1, 3, c, 16, 16, generator=g) for k, c in
            (("pose_latents", 24), ("face_latents", 24), ("body_mask", 1), ("face_mask", 1))}
    objective = Same2XObjective(make_scheduler(), teacher, depth=1, weight=0.5)
    loss_d, loss_a = objective(student, x, torch.zeros(1, 8, 32), torch.tensor([300]), cues, lat, noise, cues)
    assert loss_d.dtype == torch.float32 and torch.isfinite(loss_d) and torch.isfinite(loss_a)
    loss_d.backward()
    assert all(p.grad is None or p.grad.dtype == torch.bfloat16 for p in student.parameters())


def test_cross_id_teacher_is_held_in_bf16_under_bf16_mixed_precision(same_id_run, puppet_dataset, tmp_path):
    """The frozen teacher in bf16 (11 GiB instead of 22 at 5B, the README's memory table) while the
    student starts from its weights in fp32."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/tiny.yaml").read_text() +
                   "train:\n  batch_size: 2\n  warmup_steps: 1\n  mixed_precision: bf16\n")
    r = subprocess.run([PY, "-m", "directanimator", "train", "--config", str(cfg), "--dataset", str(puppet_dataset),
                        "--stage", "cross_id", "--teacher", str(same_id_run), "--out", str(tmp_path / "x"),
                        "--max-steps", "2", "--quiet"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert summary["teacher_sha1"] == weights_digest(load_transformer(same_id_run).to(torch.bfloat16))
    assert all(v.dtype == torch.float32 for v in load_transformer(tmp_path / "x").state_dict().values())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in read_log(tmp_path / "x"))
