"""Launch DeepSpeed ZeRO-2 and FSDP for real on the tiny CogVideoX1.5-5B-I2V-layout folder, 2 processes
(issue #13: "a ZeRO-2 and an FSDP config are launched for real"). GPU only: accelerate runs DeepSpeed and
FSDP only on GPUs (its AcceleratorState turns `cpu=True` runs into plain multi-CPU DDP), so on this
project's CPU machines the script stops with one error line.

    .venv/bin/python benchmarks/sharded_launch.py [--steps 4] [--work out/sharded]   # >= 2 CUDA GPUs;
                                                                                    # ZeRO-2 needs deepspeed

For each of configs/accelerate/deepspeed_zero2_8gpu.yaml and fsdp_8gpu.yaml (num_processes set to 2):
same-ID training from the tiny folder (tests/cogvideox_folder.py, random weights in the real layout)
for --steps steps with a checkpoint every 2, then the cross-ID stage with the same-ID run as teacher,
then a `--resume` of the same-ID run to 2 more steps. Prints one JSON line per launch: exit code, wall
seconds, the run's summary (weights SHA-1 of the gathered weights, trained parameters) and the last
lines of stderr when it failed. Resuming is expected to fail with the trainer's own message (the
optimizer state of a sharded run is not in the checkpoint yet); the script reports what happened.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--work", default="out/sharded")
    args = ap.parse_args()
    import torch

    if torch.cuda.device_count() < 2:
        raise SystemExit(f"error: needs 2 CUDA GPUs (torch sees {torch.cuda.device_count()}): accelerate runs "
                         "DeepSpeed and FSDP only on GPUs")
    import yaml

    from directanimator.config import dump_config
    from directanimator.data.preprocess import preprocess
    from directanimator.synth.world import build_world
    from directanimator.train.pseudo import make_pseudo
    from tests.cogvideox_folder import make_tiny_cogvideox15_i2v
    from tests.test_real_layout import keep_every_pseudo_clip, train_config

    work = (ROOT / args.work).resolve()
    folder = work / "CogVideoX1.5-5B-I2V"
    if not (folder / "model_index.json").is_file():
        make_tiny_cogvideox15_i2v(folder)
    world = work / "world"
    if not (world / "manifest.jsonl").is_file():
        build_world(world, identities=4, motions=4, clips=8, frames=9, size=64, seed=2, progress=False)
    cfg = keep_every_pseudo_clip(train_config(folder, world, max_steps=args.steps))
    if not (world / "pseudo" / "manifest.jsonl").is_file():
        make_pseudo(world, cfg, progress=False)
    preprocess(world, cfg, progress=False)
    cfg.train.mixed_precision = "bf16"
    cfg_path = work / "config.yaml"
    cfg_path.write_text(dump_config(cfg))

    accelerate = str(Path(sys.executable).parent / "accelerate")
    for name in ("deepspeed_zero2_8gpu", "fsdp_8gpu"):
        acc = yaml.safe_load((ROOT / "configs" / "accelerate" / f"{name}.yaml").read_text())
        acc["num_processes"] = 2
        acc_path = work / f"{name}_2proc.yaml"
        acc_path.write_text(yaml.safe_dump(acc))
        runs = work / "runs" / name
        launches = [
            ("same_id", ["--stage", "same_id", "--out", str(runs / "same_id"), "--max-steps", str(args.steps)]),
            ("cross_id", ["--stage", "cross_id", "--teacher", str(runs / "same_id"), "--out", str(runs / "cross_id"),
                          "--max-steps", str(args.steps)]),
            ("resume same_id", ["--stage", "same_id", "--out", str(runs / "same_id"), "--max-steps",
                                str(args.steps + 2), "--resume"]),
        ]
        for label, extra in launches:
            cmd = [accelerate, "launch", "--config_file", str(acc_path), "-m", "directanimator.train", "--config",
                   str(cfg_path), "--dataset", str(world), "--quiet", *extra]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            row = {"backend": name, "launch": label, "exit": r.returncode, "seconds": round(time.perf_counter() - t0, 1)}
            summary = Path(extra[extra.index("--out") + 1]) / "summary.json"
            if r.returncode == 0 and summary.is_file():
                s = json.loads(summary.read_text())
                row.update(weights_sha1=s.get("weights_sha1"), trainable_parameters=s.get("trainable_parameters"),
                           steps=s.get("steps"), world_size=s.get("world_size"))
            else:
                row["stderr_tail"] = r.stderr.strip().splitlines()[-3:]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
