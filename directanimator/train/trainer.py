"""One accelerate training loop for both Same2X stages (paper 3.2, A.3); the config picks the stage.

same_id   L = L_denoise on (reference, same-ID cues) -> the clip itself
cross_id  L = L_denoise + lambda * L_S2X: the student sees pseudo cues, the frozen same-ID teacher
          sees the clip's own cues, both with the same noisy latents and timestep (eq 4)

L_denoise is CogVideoX's v-prediction MSE with timesteps uniform over {0..999}, or on a Wan backbone
Wan's flow-matching loss with shifted noise levels (train/losses.py).
Noise, timesteps and cue dropout come from a generator seeded by (seed, step, micro-batch, rank),
and the data order from (seed, epoch), so a resumed run draws exactly what the uninterrupted run
would have drawn and continues the same loss curve.

Run directory: config.yaml, log.jsonl (one line per optimizer step), checkpoints/ (train/checkpoint.py),
tensorboard/ when TensorBoard is installed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, dump_config, to_dict
from ..data.dataset import CachedSamples
from ..data.sampler import BucketBatchSampler
from ..errors import InputError, TrainingError
from ..model import CueFusionTransformer3D, build_codec, build_text_encoder, build_transformer
from ..model.loading import check_compatible, load_transformer  # noqa: F401 (re-exported)
from ..model.sampling import build_scheduler
from .checkpoint import latest_checkpoint, load_checkpoint, partial_folder, save_checkpoint, start_partial
from .sharded import load_shard, save_shard
from .losses import make_objective


def s2x_depth(cfg: Config, num_layers: int) -> int:
    d = cfg.train.s2x.depth
    if d is None:
        d = max(1, round(num_layers * 10 / 42))  # the paper aligns block 10 of 42
    if not 1 <= d <= num_layers:
        raise InputError(f"train.s2x.depth must lie in 1..{num_layers}, got {d}")
    return d


def save_model_folder(model: CueFusionTransformer3D, folder: Path, cfg: Config,
                      state: dict[str, torch.Tensor] | None = None) -> None:
    """folder/model/ (config.json + safetensors) and, for a partial run (train.trainable lora or
    cue_only), folder/adapter/ with the trained part on its own; model/ then holds the plain
    backbone weights, LoRA not merged (model/adapters.py). `state`: the weights gathered from the
    processes of a sharded run (DeepSpeed/FSDP), instead of the model's own."""
    from ..model.adapters import ADAPTER_DIR, has_lora, plain_state_dict, save_adapter
    from safetensors.torch import save_file

    if cfg.train.trainable == "full" and not has_lora(model) and state is None:
        model.save_pretrained(folder / "model", safe_serialization=True)
        return
    model.save_config(folder / "model")
    save_file({k: v.detach().cpu().contiguous() for k, v in plain_state_dict(model, state).items()},
              str(folder / "model" / "diffusion_pytorch_model.safetensors"))
    if cfg.train.trainable != "full" or has_lora(model):
        save_adapter(model, folder / ADAPTER_DIR, cfg.train.trainable, cfg.train.lora, state=state)


def save_best(out: Path, model: CueFusionTransformer3D, row: dict, cfg: Config) -> None:
    """RUN/best/: the model with the best validation metric so far (written aside, then swapped in)."""
    from ..storage import atomic_output_dir

    with atomic_output_dir(out / "best", overwrite=True, known=("model", "adapter", "best.json", "config.yaml")) as tmp:
        save_model_folder(model, tmp, cfg)
        (tmp / "best.json").write_text(json.dumps(row, indent=1))
        (tmp / "config.yaml").write_text(dump_config(cfg))


def weights_digest(model: torch.nn.Module | dict[str, torch.Tensor]) -> str:
    """SHA-1 over every weight's name and bytes (a module or a state dict)."""
    import hashlib

    h = hashlib.sha1()
    state = model if isinstance(model, dict) else model.state_dict()
    for name, t in state.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def lr_factor(tc, step: int) -> float:
    """Linear warm-up, then constant or cosine decay to `lr_min_ratio` at `max_steps`."""
    warm = min(1.0, (step + 1) / max(1, tc.warmup_steps))
    if tc.lr_schedule == "constant" or step < tc.warmup_steps:
        return warm
    progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
    return tc.lr_min_ratio + (1 - tc.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _no_deepspeed_shared_memory_kernel() -> None:
    """DeepSpeed without CUDA (its CPU accelerator) compiles its shared-memory all-reduce kernel with gcc
    at its first use in every fresh install (2.4 minutes on the 2-core machine), and that kernel's bf16
    path needs AVX-512 (DeepSpeed's own note: without it the kernel faults and its peers hang). Marked
    incompatible, the all-reduce goes through the gloo process group instead. (DeepSpeed keeps its
    compatibility table as one module-level dict on purpose, so that edits to it hold.)"""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def _tell_deepspeed_the_batch(accelerator, batch_size: int) -> None:
    """Under DeepSpeed, fill `train_micro_batch_size_per_gpu` (and the total) when the config says
    "auto": accelerate takes them from a DataLoader passed to prepare(), which this trainer does not pass."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = batch_size
    if ds.get("train_batch_size", "auto") == "auto":
        accum = ds.get("gradient_accumulation_steps", accelerator.gradient_accumulation_steps)
        accum = accelerator.gradient_accumulation_steps if accum == "auto" else accum
        ds["train_batch_size"] = batch_size * accum * accelerator.num_processes


def make_optimizer(tc, params: list, backend: str | None = None) -> torch.optim.Optimizer:
    """AdamW (`train.optimizer: adamw`), or bitsandbytes' 8-bit AdamW (`adamw8bit`: its two moments
    stored in 8 bits with block-wise scales, 2 bytes per trained parameter instead of 8; the weights
    and gradients stay as they are). bitsandbytes >= 0.48 also runs it on the CPU."""
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    if backend is not None:
        raise InputError(f"train.optimizer adamw8bit is for one GPU or DDP, not {backend}: ZeRO-2/FSDP already "
                         "shard AdamW's state over the GPUs (set train.optimizer: adamw)")
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise InputError("train.optimizer adamw8bit needs bitsandbytes: pip install -e \".[bnb]\" "
                         "(or set train.optimizer: adamw)") from None
    return bnb.optim.AdamW8bit(params, lr=tc.lr, weight_decay=tc.weight_decay)


def _step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 131 + micro) * 4099 + rank)


def train(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train one stage (`cfg.train.stage`) into the run folder `out`; with `resume`, from its latest
    checkpoint. Returns the run's summary (also written to `out`/summary.json)."""
    out = Path(out)
    _check_train_config(cfg, out, resume)
    run = _Run(cfg, out, progress)
    if resume:
        run.resume()
    run.start_outputs()
    while run.state["step"] < cfg.train.max_steps:
        run.step()
    return run.finish()


def _check_train_config(cfg: Config, out: Path, resume: bool) -> None:
    tc = cfg.train
    if cfg.data.dataset is None:
        raise InputError("no dataset: pass --dataset DIR or set data.dataset in the config")
    if not Path(cfg.data.dataset).is_dir():
        raise InputError(f"dataset not found: {cfg.data.dataset}")
    if tc.max_steps < 1:
        raise InputError(f"train.max_steps (--max-steps) must be at least 1, got {tc.max_steps}")
    if tc.stage == "cross_id" and tc.teacher is None and ((tc.init == "same_id" and not tc.init_from)
                                                          or tc.s2x.weight > 0):
        raise InputError("the cross_id stage needs a same-ID teacher (it starts from it or aligns to it): "
                         "pass --teacher RUN_OR_CHECKPOINT")
    if not resume and latest_checkpoint(out) is not None:
        raise InputError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")


def _make_accelerator(tc):
    """accelerate's Accelerator for this machine and launch. cpu=True without CUDA: only then does
    accelerate form a gloo process group from the launcher's WORLD_SIZE (without it every process
    silently trains alone). DeepSpeed is the exception: accelerate turns a cpu=True run into plain DDP,
    so a DeepSpeed launch without CUDA keeps cpu=False and names the gloo backend (DeepSpeed then runs
    on its CPU accelerator: how the tests launch ZeRO-2 here)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = [DistributedDataParallelKwargs(find_unused_parameters=False)]
    cpu = not torch.cuda.is_available()
    if cpu:  # DeepSpeed's own choice without CUDA, named so that importing it does not warn
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        from accelerate.utils import InitProcessGroupKwargs

        cpu = False
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
        _no_deepspeed_shared_memory_kernel()
    return Accelerator(cpu=cpu, gradient_accumulation_steps=tc.grad_accum,
                       mixed_precision=_mixed_precision(tc.mixed_precision), kwargs_handlers=handlers)


class _Run:
    """One training run: set up in `__init__` (accelerator, data, the student and the frozen teacher,
    optimizer, objective), then `resume`, `start_outputs`, `step` until the last step, `finish`.
    Validation (`validate`) and checkpoints (`checkpoint`) are hooks `step` calls on their schedule."""

    def __init__(self, cfg: Config, out: Path, progress: bool):
        from accelerate.utils import DistributedType

        self.cfg, self.tc, self.out, self.progress = cfg, cfg.train, out, progress
        tc = self.tc
        acc = self.accelerator = _make_accelerator(tc)
        self.device, self.rank, self.world = acc.device, acc.process_index, acc.num_processes
        self.backend = {DistributedType.DEEPSPEED: "deepspeed", DistributedType.FSDP: "fsdp"}.get(acc.distributed_type)
        self.main = acc.is_main_process
        torch.manual_seed(tc.seed)
        self.codec = build_codec(cfg.model)
        data = CachedSamples(cfg.data.dataset, cfg, tc.stage)
        self.sampler = BucketBatchSampler(data.shapes, tc.batch_size, tc.seed, self.rank, self.world)
        self.loader = DataLoader(data, batch_sampler=self.sampler, num_workers=cfg.data.num_workers)
        self._build_models()
        self.text = build_text_encoder(cfg.model, self.model, device=self.device)
        self.val_set = None
        if tc.validation.dataset is not None and self.main:
            from .validation import build_validation_set

            self.val_set = build_validation_set(tc.validation.dataset, cfg, self.codec, tc.validation.triples)
        self._build_optimizer()
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "nonfinite_in_row": 0, "skipped_nonfinite": 0}
        self.last_log: dict = {}
        # a sharded run's weights gathered for its final checkpoint, reused for the final digest; held only
        # from the last step on (kept at every checkpoint it would pin a full copy, 24 GB at 5B, in between);
        # set on every process alike (step-based), so no process skips a collective the others enter
        self.final_gathered: tuple[dict | None] | None = None

    # ------------------------------------------------------------------ setup

    def _build_models(self) -> None:
        """The frozen same-ID teacher (cross-ID stage), the student (from the teacher or the base
        model), its trainable part, and the S2X depth and projector."""
        cfg, tc = self.cfg, self.tc
        teacher = None
        if tc.stage == "cross_id" and tc.teacher is not None:  # none: from the base model without S2X
            teacher = load_transformer(tc.teacher)
            check_compatible(teacher, cfg, self.codec.latent_channels, f"teacher {tc.teacher}")
            teacher.requires_grad_(False).eval().to(self.device)
        start = "init_from" if tc.init_from else ("teacher" if teacher is not None and tc.init == "same_id" else "base")
        if start == "init_from":  # fp32 trainable weights, whatever they were stored in (the shipped model: fp16)
            model = load_transformer(self._init_from_path()).float().train().requires_grad_(True)
            check_compatible(model, cfg, self.codec.latent_channels, f"train.init_from {tc.init_from}")
        elif start == "teacher":
            # fp32 trainable weights, whatever the teacher was stored in (a DeepSpeed bf16 run stores bf16)
            model = copy.deepcopy(teacher).float().train().requires_grad_(True)
        if start != "base" and cfg.model.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        self.teacher_digest = None
        if teacher is not None:
            if _mixed_precision(tc.mixed_precision) == "bf16":  # frozen: bf16 halves it (11 GiB at 5B, README)
                teacher.to(torch.bfloat16)
            self.teacher_digest = weights_digest(teacher)
        if start == "base":
            torch.manual_seed(tc.seed)
            model = build_transformer(cfg.model, self.codec.latent_channels)
        model.train()
        self.teacher, self.model = teacher, model
        self._set_trainable()
        self.depth = s2x_depth(cfg, model.config.num_layers) if teacher is not None else None
        self.use_s2x = teacher is not None and tc.s2x.weight > 0
        self.projector = self._projector() if self.use_s2x else None

    def _init_from_path(self) -> Path:
        if self.tc.init_from == "embedded":
            from ..pipeline.checkpoints import EMBEDDED

            return EMBEDDED
        return Path(self.tc.init_from)

    def _set_trainable(self) -> None:
        """`train.trainable` (full, lora, cue_only) and, for the last two, the frozen weights' dtype."""
        from ..model.adapters import expected_trainable, set_trainable

        tc, model = self.tc, self.model
        self.n_train = set_trainable(model, tc.trainable, tc.lora)
        if self.n_train != expected_trainable(model, tc.trainable, tc.lora):
            raise RuntimeError(f"train.trainable {tc.trainable}: {self.n_train} trainable parameters, the config "
                               f"says {expected_trainable(model, tc.trainable, tc.lora)}")
        if tc.frozen_dtype == "bfloat16":
            if tc.trainable == "full":
                raise InputError("train.frozen_dtype bfloat16 is for lora and cue_only runs (a full run freezes "
                                 "nothing)")
            if _mixed_precision(tc.mixed_precision) != "bf16":
                raise InputError("train.frozen_dtype bfloat16 needs train.mixed_precision: bf16 (the frozen weights "
                                 "compute in bf16 under autocast)")
            if self.backend == "fsdp":
                raise InputError("train.frozen_dtype bfloat16 is not supported under FSDP (one dtype per shard unit)")
            with torch.no_grad():
                for p in model.parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(torch.bfloat16)
        if self.main and tc.trainable != "full":
            total = sum(p.numel() for p in model.parameters())
            print(f"train.trainable {tc.trainable}: {self.n_train:,} of {total:,} parameters trained "
                  f"({100 * self.n_train / total:.1f}%), the backbone frozen", flush=True)

    def _projector(self) -> torch.nn.Linear | None:
        """S2X's optional projector from the student's width to the teacher's (identity when equal)."""
        s, t = self.model.config, self.teacher.config
        dim_s, dim_t = s.num_attention_heads * s.attention_head_dim, t.num_attention_heads * t.attention_head_dim
        if not self.tc.s2x.projector:
            if dim_s != dim_t:
                raise InputError("teacher and student widths differ: set train.s2x.projector: true")
            return None
        projector = torch.nn.Linear(dim_s, dim_t)
        if dim_s == dim_t:
            with torch.no_grad():
                projector.weight.copy_(torch.eye(dim_s))
                projector.bias.zero_()
        return projector

    def _build_optimizer(self) -> None:
        """The optimizer and LR schedule, the models prepared by accelerate, and the objective."""
        tc, acc = self.tc, self.accelerator
        self.params = [p for p in self.model.parameters() if p.requires_grad] + (
            list(self.projector.parameters()) if self.projector is not None else [])
        self.optimizer = make_optimizer(tc, self.params, self.backend)
        self.lr_sched = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(tc, s))
        # The LR schedule is stepped by hand once per optimizer step: accelerate's wrapper would step it
        # once per process. Our DataLoader stays ours (its bucket sampler already shards by rank; prepare()
        # would shard it again), so DeepSpeed, which reads the micro-batch size from a prepared DataLoader,
        # is told it here; without it accelerate rejects the "auto" in configs/accelerate/*.yaml
        _tell_deepspeed_the_batch(acc, tc.batch_size)
        if self.projector is not None:
            self.model_p, self.projector, self.optimizer = acc.prepare(self.model, self.projector, self.optimizer)
        else:
            self.model_p, self.optimizer = acc.prepare(self.model, self.optimizer)
        self.objective = make_objective(self.cfg, self.model, self.teacher if self.use_s2x else None, self.depth,
                                        self.projector)
        self.ema = ({k: v.detach().float().clone() for k, v in self.model.state_dict().items()}
                    if tc.ema_decay > 0 else None)

    def resume(self) -> None:
        """The latest checkpoint's weights, optimizer, schedule, data position and EMA."""
        acc, backend = self.accelerator, self.backend
        ckpt = latest_checkpoint(self.out)
        if ckpt is None:
            raise InputError(f"--resume: {self.out} has no checkpoint to resume from")
        # DeepSpeed ZeRO-1/2 and FSDP2: each process reads back its own partition (train/sharded.py);
        # FSDP2's weights are shards too, ZeRO's bf16 working weights are whole (model/)
        self.state, ema_loaded = load_checkpoint(ckpt, acc.unwrap_model(self.model_p), self.optimizer, self.lr_sched,
                                                 sharded=backend is not None, weights=backend != "fsdp")
        if backend is not None:
            load_shard(ckpt, backend, self.model_p, self.optimizer, self.rank, self.world)
        if self.ema is not None:  # a run resumed with EMA newly switched on starts it from the resumed weights
            self.ema = ema_loaded if ema_loaded is not None else {
                k: v.detach().float().clone() for k, v in acc.unwrap_model(self.model_p).state_dict().items()}

    def start_outputs(self) -> None:
        """The run folder: its config, its logs cut back to the resumed step, the trivial answers'
        validation row, TensorBoard; the progress bar, the batch stream and the clock."""
        out, state = self.out, self.state
        if self.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(dump_config(self.cfg))
            for log_path in (out / "log.jsonl", out / "validation.jsonl"):
                if log_path.is_file():  # drop lines a killed run wrote after its last checkpoint
                    keep = [ln for ln in log_path.read_text().splitlines()
                            if ln.strip() and json.loads(ln)["step"] <= state["step"]]
                    log_path.write_text("".join(ln + "\n" for ln in keep))
            if self.val_set is not None and not (out / "validation.jsonl").is_file():  # the trivial answers, once
                from .validation import baseline_metrics

                (out / "validation.jsonl").write_text(json.dumps(
                    {"step": 0, "trivial_answers": baseline_metrics(self.val_set), "triples": len(self.val_set),
                     "dataset": str(self.tc.validation.dataset)}) + "\n")
        self.accelerator.wait_for_everyone()
        self.tb = None
        if self.main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.tb = None
        self.stream = self._batches()
        self.bar = tqdm(total=self.tc.max_steps, initial=state["step"], desc=f"train {self.tc.stage}", unit="step",
                        disable=not (self.progress and self.main), leave=False)
        self.t_start, self.cpu_start = time.perf_counter(), time.process_time()
        # the CPU total covers every sitting unless a sitting's checkpoint did not carry it
        state["cpu_complete"] = state["step"] == 0 or state.get("cpu_complete", "cpu_seconds_before" in state)
        if self.tc.init_from and state["step"] == 0 and self.val_set is not None:
            self.validate()  # the start's own score: what the run must beat

    def _batches(self):
        state = self.state
        while True:
            self.sampler.set_epoch(state["epoch"], state["batch_in_epoch"])
            for batch in self.loader:
                state["batch_in_epoch"] += 1
                yield batch
            state["epoch"] += 1
            state["batch_in_epoch"] = 0

    # ------------------------------------------------------------------ training

    def training_step(self, step: int) -> tuple[dict | None, int, object]:
        """One optimizer step over `train.grad_accum` micro-batches: (the mean loss terms, or None when
        a loss or gradient was not finite and the step was skipped; samples; the gradient norm)."""
        tc, acc, objective = self.tc, self.accelerator, self.objective
        sums = {"loss": 0.0, "loss_denoise": 0.0, "loss_s2x": 0.0}
        finite_all, samples, grad_norm = True, 0, None
        for micro in range(tc.grad_accum):
            batch = {k: v.to(self.device) for k, v in next(self.stream).items()}
            inputs = objective.inputs(self.model, batch, _step_generator(tc.seed, step, micro, self.rank))
            b = inputs["latents"].shape[0]
            samples += b
            enc = batch["prompt_embeds"] if "prompt_embeds" in batch else \
                self.text([self.cfg.model.text.prompt] * b, device=self.device)
            with acc.accumulate(self.model_p):
                with acc.autocast():
                    loss_d, loss_a = objective(self.model_p, encoder_hidden_states=enc, **inputs)
                    loss = objective.total(loss_d, loss_a)
                finite = acc.gather(torch.isfinite(loss.detach()).float().reshape(1)).min().item() > 0
                if not finite:
                    finite_all = False
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                acc.backward(loss)
                sums["loss"] += loss.item() / tc.grad_accum
                sums["loss_denoise"] += loss_d.item() / tc.grad_accum
                sums["loss_s2x"] += loss_a.item() / tc.grad_accum
                grad_norm = None
                if acc.sync_gradients:
                    grad_norm = acc.clip_grad_norm_(self.params, tc.grad_clip if tc.grad_clip > 0 else float("inf"))
                    if not torch.isfinite(torch.as_tensor(grad_norm)):
                        finite_all = False
                        self.optimizer.zero_grad(set_to_none=True)
                        continue
                self.optimizer.step()
                if acc.sync_gradients:
                    self.lr_sched.step()
                self.optimizer.zero_grad(set_to_none=True)
        return (sums if finite_all else None), samples, grad_norm

    def step(self) -> None:
        """A training step, then its log line, the EMA, and validation and a checkpoint when due."""
        tc, state = self.tc, self.state
        step, t0 = state["step"], time.perf_counter()
        sums, samples, grad_norm = self.training_step(step)
        if sums is None:
            state["nonfinite_in_row"] += 1
            state["skipped_nonfinite"] += 1
            state["step"] += 1
            if state["nonfinite_in_row"] > tc.max_nonfinite_in_row:
                raise TrainingError(f"{state['nonfinite_in_row']} non-finite losses or gradients in a row at step "
                                    f"{step}: lower train.lr or check the data (last finite loss: "
                                    f"{self.last_log.get('loss', 'none')})")
            self.bar.update()
            return
        state["nonfinite_in_row"] = 0
        if self.ema is not None:
            with torch.no_grad():
                for k, v in self.accelerator.unwrap_model(self.model_p).state_dict().items():
                    self.ema[k].mul_(tc.ema_decay).add_(v.detach().float(), alpha=1 - tc.ema_decay)
        state["step"] += 1
        self._log(sums, samples, grad_norm, time.perf_counter() - t0)
        if self.val_set is not None and (state["step"] % tc.validation.every == 0 or state["step"] == tc.max_steps):
            self.validate()
        if state["step"] % tc.checkpoint_every == 0 or state["step"] == tc.max_steps:
            self.checkpoint()

    def _log(self, sums: dict, samples: int, grad_norm, seconds: float) -> None:
        """The step's loss terms (mean over processes) to log.jsonl, TensorBoard and the bar."""
        state, tc = self.state, self.tc
        red = self.accelerator.reduce(torch.tensor([sums["loss"], sums["loss_denoise"], sums["loss_s2x"]],
                                                   device=self.device), reduction="mean").tolist()
        self.last_log = {"step": state["step"], "loss": red[0], "loss_denoise": red[1],
                         "loss_s2x": red[2] if self.use_s2x else None, "lr": self.lr_sched.get_last_lr()[0],
                         "grad_norm": float(grad_norm) if grad_norm is not None else None, "step_time": seconds,
                         "samples_per_s": samples * self.world / seconds, "epoch": state["epoch"],
                         "skipped_nonfinite": state["skipped_nonfinite"]}
        if self.main and (state["step"] % tc.log_every == 0 or state["step"] == 1 or state["step"] == tc.max_steps):
            with open(self.out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(self.last_log) + "\n")
            if self.tb is not None:
                for k in ("loss", "loss_denoise", "loss_s2x", "lr", "grad_norm"):
                    if self.last_log[k] is not None:
                        self.tb.add_scalar(f"train/{k}", self.last_log[k], state["step"])
        self.bar.update()
        self.bar.set_postfix(loss=f"{red[0]:.4f}")

    # ------------------------------------------------------------------ hooks

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t_start + self.state.get("seconds_before", 0.0)

    def train_cpu_seconds(self) -> float:
        """This process's CPU time (all its threads) on the run, across resumes: what a stopped run
        spent up to its last checkpoint is carried in the checkpoint's state."""
        return time.process_time() - self.cpu_start + self.state.get("cpu_seconds_before", 0.0)

    def validate(self) -> None:
        """The held-out validation row (the EMA weights when on), and RUN/best when it is the best."""
        from .validation import validate

        vc, out = self.tc.validation, self.out
        t_val = time.perf_counter()
        enc = self.text([self.cfg.model.text.prompt], device=self.device)
        judged = self.accelerator.unwrap_model(self.model_p)
        if self.ema is not None:  # with EMA on, the EMA weights are the model that is judged and kept
            judged = copy.deepcopy(judged)
            judged.load_state_dict({k: v.to(judged.state_dict()[k].dtype) for k, v in self.ema.items()})
        metrics = validate(judged, self.val_set, self.codec, enc, vc.sample_steps, device=self.device,
                           sampler=build_scheduler("ddim", self.cfg.model.pretrained, self.cfg.model.backbone),
                           objective=make_objective(self.cfg, judged))
        row = {"step": self.state["step"], **metrics, "seconds": round(time.perf_counter() - t_val, 2),
               "train_seconds": round(self.train_seconds(), 1)}
        with open(out / "validation.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        best_file = out / "best" / "best.json"
        best = json.loads(best_file.read_text()) if best_file.is_file() else None
        sign = -1.0 if vc.select == "val_loss" else 1.0
        if best is None or sign * row[vc.select] > sign * best[vc.select]:
            save_best(out, judged, row, self.cfg)
        self.bar.write(f"validation at step {self.state['step']}: "
                       + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def checkpoint(self) -> None:
        """RUN/checkpoints/step_N: the weights (gathered from the shards under DeepSpeed/FSDP), the
        optimizer (each process its partition when sharded), schedule, state and EMA."""
        acc, state, tc, out = self.accelerator, self.state, self.tc, self.out
        state["seconds_before"], state["cpu_seconds_before"] = self.train_seconds(), self.train_cpu_seconds()
        self.t_start, self.cpu_start = time.perf_counter(), time.process_time()
        acc.wait_for_everyone()
        sharded = self.backend is not None
        # collective under DeepSpeed/FSDP: every process takes part in gathering the weights
        gathered = acc.get_state_dict(self.model_p) if sharded else None
        if state["step"] == tc.max_steps:
            self.final_gathered = (gathered,)
        if sharded:  # every process writes its partition of the optimizer state into the partial folder
            if self.main:
                start_partial(out, state["step"])
            acc.wait_for_everyone()
            save_shard(partial_folder(out, state["step"]), self.backend, self.model_p, self.optimizer, self.rank,
                       self.world)
            acc.wait_for_everyone()
        if self.main:
            save_checkpoint(out, state["step"], acc.unwrap_model(self.model_p), None if sharded else self.optimizer,
                            self.lr_sched, {**state, "stage": tc.stage, "config": to_dict(self.cfg),
                                            "world_size": self.world, "backend": self.backend or "ddp"},
                            self.ema, tc.keep_last, started=sharded,
                            save_model=lambda folder, m: save_model_folder(m, folder, self.cfg, state=gathered))
        acc.wait_for_everyone()

    def _final_digest(self) -> tuple[str, bool | None]:
        """DDP keeps replicas identical; check it rather than trust it (a SHA-1 of every weight, per rank).
        Under DeepSpeed ZeRO/FSDP a rank's module holds a shard (FSDP) or the rank's copy is not what
        was saved: the digest is of the weights gathered to the main process (a collective), and there
        is no per-rank copy to compare."""
        acc = self.accelerator
        if self.backend is not None:  # the final checkpoint's gathered weights (none when resumed at the end)
            gathered = self.final_gathered[0] if self.final_gathered is not None else acc.get_state_dict(self.model_p)
            return (weights_digest(gathered) if self.main else ""), None
        digest = weights_digest(acc.unwrap_model(self.model_p))
        digests = acc.gather(torch.tensor([int(digest[:15], 16)], device=self.device)).tolist()
        if len(set(digests)) != 1:
            raise TrainingError(f"the {self.world} processes ended with different weights: {digests}")
        return digest, True

    def finish(self) -> dict:
        """The summary (checked: replicas in sync, the teacher unchanged), written by the main process."""
        tc, state, acc = self.tc, self.state, self.accelerator
        self.bar.close()
        if self.tb is not None:
            self.tb.close()
        digest, in_sync = self._final_digest()
        if self.teacher is not None and weights_digest(self.teacher) != self.teacher_digest:
            raise TrainingError("the frozen same-ID teacher changed during training")
        summary = {"run": str(self.out), "stage": tc.stage, "steps": state["step"], "world_size": self.world,
                   "skipped_nonfinite": state["skipped_nonfinite"], "last": self.last_log,
                   "seconds": round(self.train_seconds(), 2), "cpu_seconds": round(self.train_cpu_seconds(), 2),
                   "cpu_seconds_complete": state["cpu_complete"],
                   "s2x_depth": self.depth,
                   "trainable": tc.trainable, "trainable_parameters": self.n_train,
                   "weights_sha1": digest, "ranks_in_sync": in_sync, "teacher_sha1": self.teacher_digest}
        if self.main:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        acc.wait_for_everyone()
        acc.end_training()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        return summary

