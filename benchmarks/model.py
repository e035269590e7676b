"""Cost of the cue injection (the CueFusion DiT). Target: `cuefusion` at most 10% slower than the
backbone (`none`).

Builds the four injection variants with identical backbone weights at a mid-size CPU config, and
times forward (no grad) and forward+backward on the same inputs. Variants are interleaved inside
each repetition so drift in machine speed hits all of them alike; reported: median over --runs
repetitions, and the ratio to `none` measured in the same run. Also prints the parameter overhead
of the cue modules at the real CogVideoX1.5-5B size (built on the meta device).

  .venv/bin/python benchmarks/model.py [--runs 7] [--threads 2]
  .venv/bin/python benchmarks/model.py --real-size --device cuda   # GPU: bf16 step at 49x512x512
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from directanimator.config import load_config
from directanimator.model import CueFusionTransformer3D, transformer_kwargs

VARIANTS = ("none", "cuefusion", "concat", "cross_attention")

# mid-size: 8 layers x 8 heads x 48 (dim 384), 16 latent channels as the real VAE, latent 24x24x5
# (a 192x192, 17-frame clip at the VAE's 8x/4x) -> 720 vision tokens, 1.0-style 2D patches.
MID = dict(num_layers=8, num_attention_heads=8, attention_head_dim=48, time_embed_dim=256, text_embed_dim=64,
           max_text_seq_length=16, patch_size=2, sample_height=24, sample_width=24, sample_frames=17,
           in_channels=32, out_channels=16)
LATENT = (5, 24, 24)


def build(variant: str, kwargs: dict, device, dtype) -> CueFusionTransformer3D:
    torch.manual_seed(0)
    model = CueFusionTransformer3D(**kwargs, injection=variant)
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        model = model.to(device, dtype)
    # move the injection away from its zero initialisation so no branch is skipped or trivially cheap
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("cue_"):
                p.add_(0.02 * torch.randn_like(p))
    return model


def make_inputs(batch: int, latent: tuple[int, int, int], c: int, text: tuple[int, int], device, dtype):
    f, h, w = latent
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    return dict(
        hidden_states=r(batch, f, 2 * c, h, w), encoder_hidden_states=r(batch, *text),
        timestep=torch.full((batch,), 500, device=device), pose_latents=r(batch, f, c, h, w),
        face_latents=r(batch, f, c, h, w), body_mask=r(batch, f, 1, h, w).sigmoid(),
        face_mask=r(batch, f, 1, h, w).sigmoid(),
    )


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_variants(models: dict, inputs: dict, runs: int, device) -> dict:
    fwd = {v: [] for v in models}
    fwd_bwd = {v: [] for v in models}
    for rep in range(runs + 1):  # repetition 0 warms up and is discarded
        for v, m in models.items():
            sync(device)
            t = time.perf_counter()
            with torch.no_grad():
                m(**inputs)
            sync(device)
            t1 = time.perf_counter()
            out = m(**inputs).sample
            out.float().pow(2).mean().backward()
            m.zero_grad(set_to_none=True)
            sync(device)
            t2 = time.perf_counter()
            if rep:
                fwd[v].append(t1 - t)
                fwd_bwd[v].append(t2 - t1)
    res = {}
    for v in models:
        f, fb = statistics.median(fwd[v]), statistics.median(fwd_bwd[v])
        res[v] = {"forward_ms": round(1e3 * f, 1), "forward_backward_ms": round(1e3 * fb, 1)}
    for v in models:
        res[v]["forward_ratio"] = round(res[v]["forward_ms"] / res["none"]["forward_ms"], 3)
        res[v]["forward_backward_ratio"] = round(res[v]["forward_backward_ms"] / res["none"]["forward_backward_ms"], 3)
    return res


def param_overhead_5b() -> dict:
    cfg = load_config("configs/cogvideox1.5-5b-i2v.yaml").model
    out = {}
    for v in VARIANTS[1:]:
        cfg.injection = v
        with torch.device("meta"):
            m = CueFusionTransformer3D(**transformer_kwargs(cfg, 16))
        c = m.count_parameters()
        out[v] = {"backbone": c["backbone"], "cue": c["cue"], "cue_percent": round(100 * c["cue"] / c["backbone"], 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--real-size", action="store_true",
                    help="CogVideoX1.5-5B sizes, 49 frames 512x512 (13 latent frames), bf16: needs a large GPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.real_size:
        cfg = load_config("configs/cogvideox1.5-5b-i2v.yaml").model
        dtype = torch.bfloat16
        variants = ("none", "cuefusion")
        models = {}
        for v in variants:
            cfg.injection = v
            kw = transformer_kwargs(cfg, 16)
            models[v] = build(v, {k: x for k, x in kw.items() if k != "injection"}, args.device, dtype)
            models[v].enable_gradient_checkpointing()
        inputs = make_inputs(args.batch, (13, 64, 64), 16, (224, 4096), args.device, dtype)
        res = time_variants(models, inputs, args.runs, args.device)
        if torch.device(args.device).type == "cuda":
            res["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            res["device_name"] = torch.cuda.get_device_name()
    else:
        models = {v: build(v, MID, args.device, torch.float32) for v in VARIANTS}
        inputs = make_inputs(args.batch, LATENT, 16, (16, 64), args.device, torch.float32)
        res = time_variants(models, inputs, args.runs, args.device)
    print(json.dumps({"config": "real-size" if args.real_size else {"mid": MID, "latent_fhw": LATENT},
                      "runs": args.runs, "threads": args.threads, "timing": res,
                      "param_overhead_5b": param_overhead_5b()}, indent=1))


if __name__ == "__main__":
    main()
