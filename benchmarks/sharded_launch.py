"""Launch DeepSpeed ZeRO-2 and FSDP2 for real on the tiny CogVideoX1.5-5B-I2V-layout folder, 2 processes, and
resume them. ZeRO-2 runs on 2 CUDA GPUs or,
without them, on 2 CPU processes (DeepSpeed's CPU accelerator over gloo; `pip install -e ".[deepspeed]"`);
FSDP runs only where there are 2 CUDA GPUs (accelerate runs FSDP only on GPUs: elsewhere its row says
so; tests/train/test_sharded.py checks the FSDP2 checkpoint functions on 2 CPU processes without accelerate).

  .venv/bin/python benchmarks/sharded_launch.py [--steps 4] [--work out/sharded]

For each of configs/accelerate/deepspeed_zero2_8gpu.yaml and fsdp_8gpu.yaml (num_processes set to 2):
same-ID training from the tiny folder (tests/cogvideox_folder.py, random weights in the real layout)
for --steps steps with a checkpoint every 2, then the cross-ID stage with the same-ID run as teacher,
then the same-ID run cut back to its step-2 checkpoint (as if killed after it) and resumed with
`--resume`. Prints one JSON line per launch: exit code, wall seconds, the run's summary (SHA-1 of the
gathered weights, trained parameters), for the resume whether the loss curve and the final weights
equal the uninterrupted run's, and the last lines of stderr when it failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--work", default="out/sharded")
    args = ap.parse_args()
    import torch

    import shutil

    import yaml

    from directanimator.config import dump_config
    from directanimator.data.preprocess import preprocess
    from directanimator.synth.world import build_world
    from directanimator.train.pseudo import make_pseudo
    from tests.cogvideox_folder import make_tiny_cogvideox15_i2v
    from tests.model.test_real_layout import keep_every_pseudo_clip, train_config

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
    gpus = torch.cuda.device_count()
    for name in ("deepspeed_zero2_8gpu", "fsdp_8gpu"):
        if name.startswith("fsdp") and gpus < 2:
            print(json.dumps({"backend": name, "launch": "all", "skipped": f"accelerate runs FSDP only on GPUs "
                              f"(torch sees {gpus})"}), flush=True)
            continue
        acc = yaml.safe_load((ROOT / "configs" / "accelerate" / f"{name}.yaml").read_text())
        acc["num_processes"] = 2
        acc_path = work / f"{name}_2proc.yaml"
        acc_path.write_text(yaml.safe_dump(acc))
        runs = work / "runs" / name
        shutil.rmtree(runs, ignore_errors=True)
        same = runs / "same_id"
        launches = [
            ("same_id", ["--stage", "same_id", "--out", str(same)]),
            ("cross_id", ["--stage", "cross_id", "--teacher", str(same), "--out", str(runs / "cross_id")]),
            ("resume same_id from step 2", ["--stage", "same_id", "--out", str(same), "--resume"]),
        ]
        straight = None
        for label, extra in launches:
            if label.startswith("resume"):  # as if killed after step 2
                straight = ((same / "log.jsonl").read_text(), json.loads((same / "summary.json").read_text()))
                for ck in (same / "checkpoints").glob("step_*"):
                    if int(ck.name.split("_")[1]) > 2:
                        shutil.rmtree(ck)
                (same / "summary.json").unlink()
            cmd = [accelerate, "launch", "--config_file", str(acc_path), "-m", "directanimator.train", "--config",
                   str(cfg_path), "--dataset", str(world), "--quiet", "--max-steps", str(args.steps), *extra]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
            row = {"backend": name, "launch": label, "device": "cuda" if gpus >= 2 else "cpu", "exit": r.returncode,
                   "seconds": round(time.perf_counter() - t0, 1)}
            summary = Path(extra[extra.index("--out") + 1]) / "summary.json"
            if r.returncode == 0 and summary.is_file():
                s = json.loads(summary.read_text())
                row.update(weights_sha1=s.get("weights_sha1"), trainable_parameters=s.get("trainable_parameters"),
                           steps=s.get("steps"), world_size=s.get("world_size"))
                if straight is not None:
                    def curve(text):
                        return [(e["step"], e["loss"], e["lr"]) for e in map(json.loads, text.splitlines())]

                    row.update(same_loss_curve=curve((same / "log.jsonl").read_text()) == curve(straight[0]),
                               same_weights=s.get("weights_sha1") == straight[1].get("weights_sha1"))
            else:
                row["stderr_tail"] = r.stderr.strip().splitlines()[-3:]
            print(json.dumps(row), flush=True)

if __name__ == "__main__":
    main()
