"""GPU memory and speed of the real-size model (CogVideoX1.5-5B-I2V layout + cue modules, random
weights), per training mode and inference option, at 49 x 512 x 512.

    .venv/bin/python benchmarks/gpu.py --estimate            # any machine: the memory table, estimated
    .venv/bin/python benchmarks/gpu.py --estimate --backbone wan2.1-i2v-14b   # or wan2.2-ti2v-5b
    .venv/bin/python benchmarks/gpu.py --measure [--runs 3]  # a CUDA GPU: bf16 step times and peak memory

--estimate builds the model on the meta device (exact parameter counts, no memory) and adds the
bytes each mode keeps per parameter and an activation estimate (below). --measure builds it on the
GPU and measures, per row, the median of --runs steps after one warm-up and torch's peak allocated
memory. Until --measure has run on a GPU, BENCHMARKS.md marks the table as estimates.

Bytes per parameter, as the trainer runs today (accelerate mixed precision bf16: weights kept in
float32, bf16 autocast; AdamW state in float32):
  full      4 (weights) + 4 (grads) + 8 (AdamW m, v)  on every parameter
  lora      4 on every parameter + 12 on the trainable ones (LoRA + cue modules)
  cue_only  4 on every parameter + 12 on the cue modules
  ZeRO-2 over N GPUs divides the grads and AdamW terms by N.
The cross-ID stage adds the frozen Same2X teacher (the same model, bf16: 2 per parameter).
Activations with gradient checkpointing (the config's default): each block's input kept
(tokens x dim x 2 bytes x layers) plus one block recomputed (about 12 tokens x dim x 2 bytes for its
attention and 4x MLP with SDPA); tokens = 7 x 32 x 32 vision (49 frames -> 13 latents, padded to 14,
2x2x2 patches) + 224 text.
Inference (bf16): transformer weights 2 per parameter (fp8 storage: 1), T5-XXL encoder 4.76 B
parameters and the CogVideoX VAE 0.22 B (their published sizes; not built here), activations of one
forward (about 4 tokens x dim x 2 bytes, no graph kept).

Wan backbones (`--backbone`): the transformer of the checkpoint's config.json with the cue modules,
and its text encoder (UMT5-XXL's encoder), VAE and, for Wan2.1 I2V, CLIP ViT-H/14 vision encoder, each
built on the meta device from its published configuration and counted; vision tokens = latent frames
x latent grid / 2x2 patches (Wan's text and image tokens are the cross-attention's context, not in
the self-attention).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

GB = 1024 ** 3
T5_PARAMS = 4.76e9
VAE_PARAMS = 0.22e9
FRAMES, SIZE = 49, 512


def real_size_model(device="meta", dtype=torch.float32, layers: int | None = None):
    from directanimator.config import load_config
    from directanimator.model import CueFusionTransformer3D, transformer_kwargs

    cfg = load_config(ROOT / "configs" / "cogvideox1.5-5b-i2v.yaml")
    if layers is not None:  # --smoke: the real block's layout, fewer of them and 2 of its 48 heads (at the
        cfg.model.transformer.num_layers = layers  # real width, 3072, a CPU without AVX-512 multiplies bf16
        cfg.model.transformer.num_attention_heads = 2  # matrices so slowly that the smoke run took over 10 min)
    with torch.device(device):
        model = CueFusionTransformer3D(**transformer_kwargs(cfg.model, 16))
    return model.to(dtype) if device != "meta" else model, cfg


# the transformer/config.json of the diffusers folders Wan-AI/Wan2.1-I2V-14B-480P-Diffusers and
# Wan-AI/Wan2.2-TI2V-5B-Diffusers; their VAEs' configs (spatial factor 8 and 16)
WAN = {
    "wan2.1-i2v-14b": dict(
        transformer=dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                         out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40,
                         cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280,
                         added_kv_proj_dim=5120, rope_max_seq_len=1024),
        vae=dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True]),
        spatial=8, clip=True),
    "wan2.2-ti2v-5b": dict(
        transformer=dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                         out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30,
                         cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None,
                         added_kv_proj_dim=None, rope_max_seq_len=1024),
        vae=dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 attn_scales=[], temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                 out_channels=12, patch_size=2, scale_factor_spatial=16),
        spatial=16, clip=False),
}


def meta_count(build) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def wan_components(name: str) -> dict:
    """The Wan checkpoint's transformer (with the cue modules) on the meta device, and its other
    components' parameter counts."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from directanimator.model.wan import WanCueFusionTransformer3D

    spec = WAN[name]
    with torch.device("meta"):
        model = WanCueFusionTransformer3D(**spec["transformer"])
    umt5 = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      feed_forward_proj="gated-gelu")
    clip = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                            patch_size=14, image_size=224)
    return {"model": model, "text": meta_count(lambda: UMT5EncoderModel(umt5)),
            "vae": meta_count(lambda: AutoencoderKLWan(**spec["vae"])),
            "image": meta_count(lambda: CLIPVisionModel(clip)) if spec["clip"] else 0,
            "tokens": (1 + (FRAMES - 1) // 4) * (SIZE // spec["spatial"] // 2) ** 2}


def tokens(model) -> int:
    lat_f = 1 + (FRAMES - 1) // 4
    pt = model.config.patch_size_t or 1
    lat_f += (-lat_f) % pt
    p = model.config.patch_size
    return (lat_f // pt) * (SIZE // 8 // p) ** 2 + model.config.max_text_seq_length


def trainable_counts(model, lora_rank: int = 64) -> dict[str, int]:
    from directanimator.config import LoraConfig
    from directanimator.model.adapters import expected_trainable

    lora = LoraConfig(rank=lora_rank, alpha=float(lora_rank))
    return {mode: expected_trainable(model, mode, lora) for mode in ("full", "lora", "cue_only")}


def estimate(gpus: int = 1, lora_rank: int = 64, backbone: str = "cogvideox1.5-5b-i2v") -> dict:
    if backbone in WAN:
        parts = wan_components(backbone)
        model, n_tok = parts["model"], parts["tokens"]
        text_params, vae_params = parts["text"], parts["vae"] + parts["image"]
    else:
        model, _ = real_size_model()
        n_tok, text_params, vae_params = tokens(model), T5_PARAMS, VAE_PARAMS
    total = sum(p.numel() for p in model.parameters())
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    layers = model.config.num_layers
    act_train = (n_tok * dim * 2 * layers + 12 * n_tok * dim * 2) / GB
    act_infer = 4 * n_tok * dim * 2 / GB
    rows = {}
    for mode, n_train in trainable_counts(model, lora_rank).items():
        for stage, teacher in (("same-ID", 0.0), ("cross-ID", 2 * total / GB)):
            for shards in sorted({1, gpus}):
                weights = 4 * total / GB
                states = 12 * n_train / GB / shards
                rows[f"train {mode}, {stage}" + (f", ZeRO-2 x{shards}" if shards > 1 else "")] = {
                    "trainable": n_train, "weights": weights, "grads+adam": states, "teacher": teacher,
                    "activations": act_train, "total": weights + states + teacher + act_train}
            if mode != "full":  # train.frozen_dtype: bfloat16: the frozen backbone in bf16, one GPU
                half = (2 * (total - n_train) + 4 * n_train) / GB
                states = 12 * n_train / GB
                rows[f"train {mode}, {stage}, frozen backbone bf16 (train.frozen_dtype: bfloat16)"] = {
                    "trainable": n_train, "weights": half, "grads+adam": states, "teacher": teacher,
                    "activations": act_train, "total": half + states + teacher + act_train}
            if mode == "full":  # train.optimizer: adamw8bit, one GPU: fp32 gradients + two 8-bit moments
                states8 = (4 + 2) * n_train / GB
                rows[f"train {mode}, {stage}, 8-bit AdamW (train.optimizer: adamw8bit)"] = {
                    "trainable": n_train, "weights": weights, "grads+adam": states8, "teacher": teacher,
                    "activations": act_train, "total": weights + states8 + teacher + act_train}
    t5, vae = 2 * text_params / GB, 2 * vae_params / GB  # Wan2.1 I2V: the CLIP encoder counted with the VAE
    tr_bf16, tr_fp8 = 2 * total / GB, 1 * total / GB
    infer = {  # the animate options (--memory, inference.release_text_encoder)
        "bf16, T5 kept (release_text_encoder: false)": tr_bf16 + t5 + vae + act_infer,
        "bf16, T5 released after encoding (--memory none)": max(tr_bf16 + vae + act_infer, t5),
        "fp8 weight storage, bf16 compute (--memory fp8)": max(tr_fp8 + vae + act_infer, t5),
        "group offload, one block at a time (--memory group_offload)": tr_bf16 / layers + max(act_infer + vae, t5),
        "model CPU offload, the VAE off the GPU while the transformer runs (--memory model_offload)":
            max(tr_bf16 + act_infer, vae + act_infer, t5),
    }
    for name, value in infer.items():
        rows[f"inference: {name}"] = {"total": value}
    return {"backbone": backbone, "parameters": total, "tokens": n_tok, "dim": dim, "layers": layers,
            "text_encoder": text_params, "vae": vae_params, "rows": rows}


def markdown(est: dict) -> str:
    lines = [f"{est['backbone']}: {est['parameters']:,} parameters, {est['tokens']:,} tokens at {FRAMES} x {SIZE} x "
             f"{SIZE}, {est['layers']} blocks of width {est['dim']}. **Estimates** (GiB per GPU, batch 1).", "",
             "| what | trained parameters | weights | grads + AdamW | teacher | activations | **total** |",
             "|---|---|---|---|---|---|---|"]
    for name, r in est["rows"].items():
        if "weights" in r:
            lines.append(f"| {name} | {r['trainable'] / 1e6:,.0f} M | {r['weights']:.1f} | {r['grads+adam']:.1f} | "
                         f"{r['teacher']:.1f} | {r['activations']:.1f} | **{r['total']:.1f}** |")
        else:
            lines.append(f"| {name} | | | | | | **{r['total']:.1f}** |")
    return "\n".join(lines)


def measure(runs: int, smoke: bool = False) -> list[dict]:
    """bf16 forward and training-step time and peak memory on the GPU, per mode / option. `smoke`: the
    same code on the CPU with one block of the real layout, 2 heads wide, at 9 x 64 x 64 (a check of this
    script, no figures)."""
    from directanimator.config import LoraConfig
    from directanimator.model.adapters import set_trainable

    if not smoke and not torch.cuda.is_available():
        raise SystemExit("error: --measure needs a CUDA GPU (torch sees none); --estimate runs anywhere")
    dev = torch.device("cpu" if smoke else "cuda")
    frames, size, layers = (9, 64, 1) if smoke else (FRAMES, SIZE, None)
    cuda = dev.type == "cuda"
    results = []

    def inputs(model):
        lat_f = 1 + (frames - 1) // 4  # 13 at 49 frames: one padding latent in front (patch_size_t 2),
        lat_f += (-lat_f) % (model.config.patch_size_t or 1)  # as the pipeline and the trainer pad
        h = size // 8
        g = torch.Generator(device="cpu").manual_seed(0)

        def r(*s):
            return torch.randn(*s, generator=g).to(dev, torch.bfloat16)

        return dict(hidden_states=r(1, lat_f, 32, h, h), encoder_hidden_states=r(1, model.config.max_text_seq_length,
                    model.config.text_embed_dim), timestep=torch.full((1,), 500, device=dev),
                    pose_latents=r(1, lat_f, 16, h, h), face_latents=r(1, lat_f, 16, h, h),
                    body_mask=r(1, lat_f, 1, h, h).sigmoid(), face_mask=r(1, lat_f, 1, h, h).sigmoid())

    def timed(fn):
        fn()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return statistics.median(times), (torch.cuda.max_memory_allocated() / GB if cuda else 0.0)

    for option in ("bf16", "fp8 layerwise casting"):
        model, _ = real_size_model(device=dev.type, dtype=torch.bfloat16, layers=layers)
        if option.startswith("fp8"):
            model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
        x = inputs(model)
        with torch.no_grad():
            s, mem = timed(lambda: model(**x))
        results.append({"row": f"forward, {option}", "seconds": s, "peak_gib": mem})
        del model
        if cuda:
            torch.cuda.empty_cache()
    from types import SimpleNamespace

    from directanimator.train.trainer import make_optimizer

    runs_of = [("full", "adamw"), ("full", "adamw8bit"), ("lora", "adamw"), ("lora", "frozen bf16"),
               ("cue_only", "adamw")]
    for mode, optim in runs_of:
        if optim == "adamw8bit":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                results.append({"row": "training step, full, 8-bit AdamW", "seconds": None,
                                "peak_gib": "not run: bitsandbytes not installed"})
                continue
        model, _ = real_size_model(device=dev.type, dtype=torch.float32, layers=layers)
        model.enable_gradient_checkpointing()
        set_trainable(model, mode, LoraConfig())
        if optim == "frozen bf16":  # train.frozen_dtype: bfloat16
            with torch.no_grad():
                for p in model.parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(torch.bfloat16)
        opt = make_optimizer(SimpleNamespace(optimizer="adamw8bit" if optim == "adamw8bit" else "adamw", lr=1e-5,
                                             weight_decay=1e-4), [p for p in model.parameters() if p.requires_grad])
        mode = mode + {"adamw8bit": ", 8-bit AdamW", "frozen bf16": ", frozen backbone bf16"}.get(optim, "")
        x = inputs(model)

        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = model(**x).sample.float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        try:
            s, mem = timed(step)
            results.append({"row": f"training step, {mode}", "seconds": s, "peak_gib": mem})
        except torch.cuda.OutOfMemoryError:
            results.append({"row": f"training step, {mode}", "seconds": None, "peak_gib": "out of memory"})
        del model, opt
        if cuda:
            torch.cuda.empty_cache()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--estimate", action="store_true")
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--gpus", type=int, default=8, help="ZeRO-2 rows for this many GPUs (estimate)")
    ap.add_argument("--backbone", choices=["cogvideox1.5-5b-i2v", *WAN], default="cogvideox1.5-5b-i2v",
                    help="the checkpoint whose memory is estimated")
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--smoke", action="store_true",
                    help="with --measure: run its code on the CPU, one block at 9 x 64 x 64 (checks the script)")
    args = ap.parse_args()
    out = {}
    if args.estimate or not args.measure:
        out["estimate"] = estimate(args.gpus, args.lora_rank, args.backbone)
        print(markdown(out["estimate"]))
    if args.measure:
        out["measured"] = measure(args.runs, args.smoke)
        out["device"] = "cpu (--smoke: no figures)" if args.smoke else torch.cuda.get_device_name(0)
        print(f"\nmeasured on {out['device']}:")
        for r in out["measured"]:
            sec = "n/a" if r["seconds"] is None else f"{r['seconds']:.2f} s"
            mem = r["peak_gib"] if isinstance(r["peak_gib"], str) else f"{r['peak_gib']:.1f} GiB"
            print(f"| {r['row']} | {sec} | {mem} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
