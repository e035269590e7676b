"""`directanimator <verb>`: parses arguments and hands over; no logic lives here.

Errors the user can fix (`InputError`) print one line on stderr and exit 2. Anything else is a bug:
one line too, exit 1, with the traceback only when DIRECTANIMATOR_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import InputError, TrainingError


def _cues(args: argparse.Namespace) -> int:
    from .config import load_config
    from .cues.files import write_cues

    cfg = load_config(args.config).cues
    if args.size is not None:
        cfg.size = args.size
        cfg.__post_init__()
    _apply_subject(cfg, args)
    report = write_cues(args.reference, args.driving, args.out, cfg, overwrite=args.overwrite,
                        progress=not args.quiet, videos=not args.arrays_only)
    for line in report.warnings:
        print(line, file=sys.stderr)
    summary = {k: report.as_dict()[k] for k in ("num_frames", "person_frames", "face_frames", "alignment")}
    summary["dropped_frames"] = len(report.dropped_frames)
    summary["ms_per_frame"] = report.ms_per_frame["total"]
    print(f"wrote {args.out}: " + json.dumps(summary))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .synth.world import build_world

    records = build_world(args.out, args.identities, args.motions, args.clips, args.frames, args.size, args.seed,
                          fps=args.fps, preview=args.preview, overwrite=args.overwrite, progress=not args.quiet,
                          reference_pose=args.reference_pose)
    splits = {s: sum(r.split == s for r in records) for s in ("train", "test")}
    print(f"wrote {args.out}: {len(records)} clips ({splits['train']} train, {splits['test']} test in "
          f"{splits['test'] // 3} cross-ID triples)")
    return 0


def _load(args: argparse.Namespace):
    from .config import load_config

    cfg = load_config(args.config)
    if getattr(args, "dataset", None):
        cfg.data.dataset = args.dataset
    return cfg


def _ingest(args: argparse.Namespace) -> int:
    from .data.ingest import IngestSettings, ingest

    settings = IngestSettings(min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                              test_fraction=args.test_fraction, frames_fps=args.frames_fps,
                              sample_fps=args.sample_fps, min_person_fraction=args.min_person_fraction,
                              scene_threshold=args.scene_threshold, subject=args.subject, max_side=args.max_side,
                              seed=args.seed)
    summary = ingest(args.source, args.out, settings, progress=not args.quiet)
    print(f"wrote {args.out}: {summary['clips']} clips from {summary['sources']} sources ({summary['train']} train, "
          f"{summary['test']} test); verdicts " + json.dumps({k: v for k, v in summary["verdicts"].items() if v})
          + f"; report {os.path.join(args.out, 'ingest_report.md')}")
    for rep in summary["per_source"]:
        if rep["error"]:
            print(f"skipped {rep['source']}: {rep['error']}", file=sys.stderr)
    return 0 if summary["clips"] else 2


def _caption(args: argparse.Namespace) -> int:
    from .data.caption import caption_dataset
    from .pipeline.checkpoints import resolve_dtype

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = _device(args.device)
    report = caption_dataset(args.dataset, _load(args), args.model, device=str(device),
                             dtype=resolve_dtype(args.dtype, device), batch_size=args.batch_size,
                             overwrite=args.overwrite, progress=not args.quiet)
    print(f"captioned {args.dataset}: {report['captioned']} new, {report['kept']} already captioned, "
          f"{report['failed']} failed, of {report['clips']} clips")
    for line in report["failures"]:
        print(f"skipped {line}", file=sys.stderr)
    return 0 if report["captioned"] + report["kept"] else 2


def _preprocess(args: argparse.Namespace) -> int:
    from .data.preprocess import preprocess

    report = preprocess(args.dataset, _load(args), progress=not args.quiet,
                        device=str(_device(args.device)))
    failed = report["failed"] + report["pseudo_failed"]
    print(f"cache {report['cache']}: " + json.dumps({k: v for k, v in report.items() if k not in ("cache", "failures")}))
    for f in report["failures"]:
        print(f"skipped {f['clip_id']}: {f['error']}", file=sys.stderr)
    return 0 if not failed or report["built"] + report["kept"] > 0 else 2


def _pseudo(args: argparse.Namespace) -> int:
    from .train.pseudo import make_pseudo

    cfg = _load(args)
    if args.generator:
        cfg.pseudo.generator = args.generator
    if args.manifest:
        cfg.pseudo.external_manifest = args.manifest
    if args.checkpoint:
        cfg.pseudo.checkpoint = args.checkpoint
    report = make_pseudo(args.dataset, cfg, overwrite=args.overwrite, progress=not args.quiet,
                         splits=tuple(args.splits))
    print(f"wrote {args.dataset}/pseudo: " + json.dumps({k: report[k] for k in ("pseudo_clips", "kept", "dropped",
                                                                             "dropped_by")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train.trainer import train

    cfg = _load(args)
    if args.stage:
        cfg.train.stage = args.stage
    if args.teacher:
        cfg.train.teacher = args.teacher
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps
    if args.validation:
        cfg.train.validation.dataset = args.validation
    if args.seed is not None:
        cfg.train.seed = args.seed
    summary = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if summary.get("last") is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {args.out}: " + json.dumps({k: summary[k] for k in ("stage", "steps", "world_size",
                                                                           "skipped_nonfinite", "seconds")}
                                                  | {"loss": summary["last"].get("loss")}))
    return 0


def _plot_losses(args: argparse.Namespace) -> int:
    from .train.plot import plot_losses

    out = plot_losses(args.runs, args.out, labels=args.labels, smooth_window=args.smooth, title=args.title)
    print(f"wrote {out}")
    return 0


def _device(name: str | None):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device: not a device name: {name!r} (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA GPU is visible to torch on this machine")
    return device


def _apply_subject(cues_cfg, args: argparse.Namespace) -> None:
    """--subject / --reference-subject into cues.segmentation (checked there)."""
    from dataclasses import replace

    seg = cues_cfg.segmentation
    new = replace(seg, subject=args.subject if args.subject is not None else seg.subject,
                  reference_subject=args.reference_subject if args.reference_subject is not None
                  else seg.reference_subject)
    cues_cfg.segmentation = new


def _add_placement_args(p: argparse.ArgumentParser) -> None:
    """Where and how a pipeline's models run: animate and serve take the same three flags."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="the transformer's and VAE's dtype (default: bfloat16 on CUDA, float32 on the CPU)")
    p.add_argument("--memory", choices=_literal_choices("inference", "memory"), default=None,
                   help="GPU memory saver for the transformer: fp8 weight storage, group offload (one block on the "
                        "GPU at a time), model offload (transformer and VAE on the GPU only while each runs), none, "
                        "or auto (chosen from free GPU memory, printed); default: the checkpoint's inference.memory")


def _add_subject_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject", default=None,
                   help="the driving video's person when there are several: auto (largest), largest, center, N "
                        "(0 = leftmost) or X,Y (a point in the first frame, in pixels); then tracked")
    p.add_argument("--reference-subject", default=None, help="the same choice for the reference photo")


def _literal_choices(section: str, key: str) -> list[str]:
    """A CLI choice list taken from the config's Literal type (one list, not two)."""
    import typing

    from .config import Config

    cls = typing.get_type_hints(Config)[section]
    return list(typing.get_args(typing.get_type_hints(cls)[key]))


def caption_photo(model, photo, cfg, device) -> str:
    """The reference photo's caption by a local Qwen2-VL / Qwen2.5-VL (`--caption-model`)."""
    from .model.captioner import Captioner
    from .pipeline.checkpoints import resolve_dtype
    from .video import load_image

    image = photo if not isinstance(photo, (str, os.PathLike)) else load_image(photo)
    captioner = Captioner(model, cfg.model.text.caption_prompt, device=device, dtype=resolve_dtype(None, device),
                          max_new_tokens=cfg.model.text.caption_max_tokens)
    return captioner([[image]])[0]


def _animate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import check_seed, check_size
    from .storage import check_output_file

    # everything that can be checked without the model first: a bad output or seed fails at once
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise InputError(f"--out must end in .mp4, .mkv or .mov, got {out.name}")
    side = out.with_name(out.stem + "_side_by_side" + out.suffix) if args.side_by_side else None
    for path in (out, side):
        if path is not None:
            check_output_file(path, overwrite=args.overwrite)
    if args.seed is not None:
        check_seed(args.seed)
    if args.caption_model is not None:
        from .model.captioner import check_caption_model

        if args.prompt is not None:
            raise InputError("give --prompt or --caption-model, not both")
        check_caption_model(args.caption_model)
    from .pipeline import DirectAnimatorPipeline, resolve_checkpoint

    if args.size is not None:  # from the checkpoint's config alone, before its weights load
        check_size(resolve_checkpoint(args.checkpoint)[1], args.size)
    device = _device(args.device)
    pipe = DirectAnimatorPipeline.from_pretrained(args.checkpoint, scheduler=args.scheduler, device=device,
                                                  dtype=args.dtype, merge_lora=not args.lora_unmerged,
                                                  memory=args.memory)
    _apply_subject(pipe.config.cues, args)
    prompt = args.prompt
    if args.caption_model is not None:
        prompt = caption_photo(args.caption_model, args.reference, pipe.config, device)
        print(f"caption of the reference: {prompt}")
    result = pipe(args.reference, args.driving, out, steps=args.steps, seed=args.seed, size=args.size,
                  guidance_scale=args.guidance, side_by_side=side, progress=not args.quiet, prompt=prompt,
                  keep_background=args.keep_background, window_fusion=args.window_fusion, out_size=args.out_size)
    for line in result.warnings:
        print(line, file=sys.stderr)
    print(f"wrote {out}" + (f" and {side}" if side else "") + ": " + json.dumps(result.as_dict()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .eval.evaluate import evaluate, markdown_table, write_report
    from .eval.features import FeatureMetrics

    from .storage import check_output_file

    check_output_file(args.out)  # before the compute: a folder or an unwritable place fails now
    feats = FeatureMetrics(args.inception, args.i3d, args.lpips_alexnet, args.lpips_lin, device=_device(args.device))
    report = evaluate(args.generated, args.ground_truth, args.reference, args.driving, feats, face=not args.no_face,
                      pose=not args.no_pose, progress=not args.quiet, arcface=args.arcface,
                      dwpose=args.dwpose)
    write_report(report, args.out)
    print(markdown_table(report))
    for name, why in report["unavailable"].items():
        print(f"{name}: {why}")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .eval.benchmark import benchmark
    from .eval.features import FeatureMetrics
    from .pipeline import DirectAnimatorPipeline

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if args.seed is not None:
        from .config import check_seed

        check_seed(args.seed)
    device = _device(args.device)
    feats = FeatureMetrics(args.inception, args.i3d, args.lpips_alexnet, args.lpips_lin, device=device)
    pipe = DirectAnimatorPipeline.from_pretrained(args.checkpoint, device=device, dtype=args.dtype)
    report = benchmark(args.dataset, pipe, args.out, str(args.checkpoint or "the embedded demo model"), feats,
                       cross_id=args.cross_id, steps=args.steps, seed=args.seed, limit=args.limit,
                       progress=not args.quiet, face=not args.no_face, pose=not args.no_pose, arcface=args.arcface,
                       dwpose=args.dwpose)
    with open(os.path.join(args.out, "benchmark.md")) as f:
        print(f.read())
    print(f"wrote {os.path.join(args.out, 'benchmark.json')} ({sum(p['clips'] for p in report['protocols'])} clips)")
    return 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (e.g. configs/tiny.yaml)")
    p.add_argument("--stage", choices=["same_id", "cross_id"], default=None, help="overrides train.stage")
    p.add_argument("--dataset", default=None, help="dataset folder; overrides data.dataset")
    p.add_argument("--out", required=True, help="run directory (config, log.jsonl, checkpoints/)")
    p.add_argument("--teacher", default=None, help="cross_id: same-ID run directory or checkpoint directory")
    p.add_argument("--max-steps", type=int, default=None, help="overrides train.max_steps")
    p.add_argument("--validation", default=None, metavar="DATASET",
                   help="held-out cross-ID triples (a puppet world) to validate on; overrides train.validation.dataset")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed (weights, noise, data order)")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--quiet", action="store_true")


def _serve(args: argparse.Namespace) -> int:
    from .ui import Limits, serve

    for name in ("max_upload_mb", "max_seconds"):
        if not getattr(args, name) > 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port must lie between 1 and 65535, got {args.port}")
    serve(args.checkpoint, args.host, args.port, Limits(max_upload_mb=args.max_upload_mb,
                                                         max_video_seconds=args.max_seconds),
          device=_device(args.device), dtype=args.dtype, memory=args.memory)
    return 0


def _add_cues_verb(sub) -> None:
    """The `cues` verb's arguments."""
    p = sub.add_parser("cues", help="driving video + reference photo -> Driving Cue Triplet (paper 3.1)")
    p.add_argument("--reference", required=True, help="reference photo (any image OpenCV reads)")
    p.add_argument("--driving", required=True, help="driving video (any format PyAV reads)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--size", type=int, default=None, help="working size in pixels (default 512)")
    p.add_argument("--config", default=None, help="YAML config (see configs/); unknown keys are errors")
    _add_subject_args(p)
    p.add_argument("--arrays-only", action="store_true",
                   help="write only cues.safetensors, report.json and config.yaml (no mp4 previews, no preview.png)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cues)


def _add_synth_verb(sub) -> None:
    """The `synth` verb's arguments."""
    p = sub.add_parser("synth", help="write a puppet-world dataset with ground truth")
    p.add_argument("--out", required=True, help="dataset folder (written atomically)")
    p.add_argument("--identities", type=int, default=10)
    p.add_argument("--motions", type=int, default=10)
    p.add_argument("--clips", type=int, default=20, help="train clips + test triples (a fifth are test triples)")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-pose", choices=["other_motion", "own_frame"], default="other_motion",
                   help="training clips' reference photo: the person in another motion's pose, stored with the clip "
                        "(as test triples have it), or one of the clip's own frames")
    p.add_argument("--preview", action="store_true", help="also write contact_sheet.png (identities x motions)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_synth)


def _add_ingest_verb(sub) -> None:
    """The `ingest` verb's arguments."""
    from .data.ingest import IngestSettings

    d = IngestSettings()
    p = sub.add_parser("ingest", help="a folder of raw videos (or frame folders) -> clips and manifest (resumable)")
    p.add_argument("source", help="folder of videos and/or folders of numbered frames")
    p.add_argument("--out", required=True, help="dataset folder (clips/, manifest.jsonl, ingest_report.md)")
    p.add_argument("--min-seconds", type=float, default=d.min_seconds, help="shorter pieces are dropped")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="longer scenes are cut into clips")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="fraction of the source videos whose clips all go to the test split")
    p.add_argument("--frames-fps", type=float, default=d.frames_fps, help="frame rate of frame folders")
    p.add_argument("--sample-fps", type=float, default=d.sample_fps, help="person checks per second")
    p.add_argument("--min-person-fraction", type=float, default=d.min_person_fraction,
                   help="a clip is kept when this fraction of its checks shows one main person")
    p.add_argument("--scene-threshold", type=float, default=d.scene_threshold,
                   help="PySceneDetect ContentDetector's threshold")
    p.add_argument("--subject", default=d.subject,
                   help="with several people, the one to keep (auto: clips with several people are dropped; "
                        "largest, center, N, X,Y as in the cues)")
    p.add_argument("--max-side", type=int, default=d.max_side, help="clips are downscaled to this longer side")
    p.add_argument("--seed", type=int, default=d.seed, help="of the train/test split of the sources")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_ingest)


def _add_caption_verb(sub) -> None:
    """The `caption` verb's arguments."""
    p = sub.add_parser("caption", help="caption every clip with Qwen2-VL / Qwen2.5-VL from a local folder (resumable)")
    p.add_argument("dataset", help="dataset folder (manifest.jsonl, clips/)")
    p.add_argument("--model", default=None, help="local Qwen2-VL or Qwen2.5-VL folder (Hugging Face layout)")
    p.add_argument("--config", default=None, help="for model.text.caption_prompt, caption_frames, caption_max_tokens")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16")
    p.add_argument("--batch-size", type=int, default=4, help="clips per forward pass")
    p.add_argument("--overwrite", action="store_true", help="caption clips that already have a caption again")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_caption)


def _add_preprocess_verb(sub) -> None:
    """The `preprocess` verb's arguments."""
    p = sub.add_parser("preprocess", help="cache cues and latents of a dataset for training (resumable)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--device", default="auto",
                   help="where the VAE encodes: cpu, cuda, cuda:N (default: cuda when there is one); its dtype is "
                        "the config's data.codec_dtype")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_preprocess)


def _add_pseudo_verb(sub) -> None:
    """The `pseudo` verb's arguments."""
    p = sub.add_parser("pseudo", help="pseudo cross-ID driving clips + automated quality filter (Same2X)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--generator", choices=["puppet", "directanimator", "external"], default=None)
    p.add_argument("--manifest", default=None, help="external: JSONL of {source_clip, video}")
    p.add_argument("--checkpoint", default=None, help="directanimator: same-ID run or checkpoint")
    p.add_argument("--splits", nargs="+", choices=["train", "test"], default=["train"],
                   help="whose clips to drive: train (the cross-ID stage's data) and/or test (the driving "
                        "videos of `benchmark --cross-id`)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_pseudo)


def _add_train_verb(sub) -> None:
    """The `train` verb's arguments."""
    p = sub.add_parser("train", help="Same2X training, either stage (also: accelerate launch -m directanimator.train)")
    add_train_arguments(p)
    p.set_defaults(func=_train)


def _add_animate_verb(sub) -> None:
    """The `animate` verb's arguments."""
    p = sub.add_parser("animate", help="reference photo + driving video -> animated video (one command)")
    p.add_argument("--reference", required=True, help="reference photo")
    p.add_argument("--driving", required=True, help="driving video; the output keeps its frame count, fps, audio")
    p.add_argument("--out", required=True, help="output video (.mp4)")
    p.add_argument("--checkpoint", default=None,
                   help="pipeline folder, training run or checkpoint (default: the embedded puppet-world demo model)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the checkpoint's config)")
    p.add_argument("--seed", type=int, default=None, help="the same seed gives the same video")
    p.add_argument("--size", type=int, default=None, help="working size in pixels (default: the model's)")
    p.add_argument("--out-size", type=int, default=None,
                   help="the written video's longer side in pixels, upscaled from the working size (default: the "
                        "working size)")
    p.add_argument("--scheduler", choices=["ddim", "dpm"], default=None)
    _add_placement_args(p)
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance on the cues (1 = off)")
    p.add_argument("--window-fusion", choices=_literal_choices("inference", "window_fusion"),
                   default=None, help="join overlapping windows by cross-fading decoded frames (pixel) or by "
                                      "denoising them together (latent); default: the checkpoint's")
    _add_subject_args(p)
    p.add_argument("--lora-unmerged", action="store_true",
                   help="a LoRA run's adapter as live LoRA layers instead of merged into the weights")
    p.add_argument("--keep-background", action=argparse.BooleanOptionalAction, default=None,
                   help="away from the person, the reference photo's own pixels (a still camera); default: the "
                        "checkpoint's inference.keep_background")
    p.add_argument("--prompt", default=None,
                   help="text prompt: the person's appearance and the scene (default: the config's model.text.prompt)")
    p.add_argument("--caption-model", default=None,
                   help="local Qwen2-VL / Qwen2.5-VL folder: caption the reference photo and use it as the prompt")
    p.add_argument("--side-by-side", action="store_true",
                   help="also write OUT_side_by_side.mp4: reference | driving | pose cue | result")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_animate)


def _add_evaluate_verb(sub) -> None:
    """The `evaluate` verb's arguments."""
    p = sub.add_parser("evaluate", help="the paper's ten metrics: generated vs ground-truth videos")
    p.add_argument("--generated", required=True, help="a video, or a folder of videos matched by file name")
    p.add_argument("--ground-truth", required=True)
    p.add_argument("--device", default="auto",
                   help="where Inception, I3D and AlexNet run: cpu, cuda, cuda:N (default: cuda when there is one)")
    p.add_argument("--reference", default=None, help="reference image (or folder of images) for FIS")
    p.add_argument("--driving", default=None, help="driving video(s) for PLC and FLC")
    p.add_argument("--out", required=True, help="report.json")
    _add_metric_arguments(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)


def _add_metric_arguments(p) -> None:
    """The weights of the paper's metrics and which to skip, shared by `evaluate` and `benchmark`."""
    p.add_argument("--inception", default=None, help="FID: TorchScript inception-2015-12-05.pt")
    p.add_argument("--i3d", default=None, help="FVD: TorchScript i3d_torchscript.pt")
    p.add_argument("--lpips-alexnet", default=None, help="LPIPS: torchvision alexnet-owt-7be5be79.pth")
    p.add_argument("--lpips-lin", default=None, help="LPIPS: lpips weights/v0.1/alex.pth")
    p.add_argument("--arcface", default=None, help="FIS/FTS with ArcFace: an InsightFace ArcFace .onnx (default: dlib)")
    p.add_argument("--dwpose", default=None, help="PLC with DWPose: a whole-body .onnx (default: MediaPipe Pose)")
    p.add_argument("--no-face", action="store_true", help="skip FIS, FTS, FLC")
    p.add_argument("--no-pose", action="store_true", help="skip PLC")


def _add_benchmark_verb(sub) -> None:
    """The `benchmark` verb's arguments."""
    p = sub.add_parser("benchmark", help="a checkpoint on a dataset's test split: the paper's protocols and metrics")
    p.add_argument("dataset", help="dataset folder with a test split (e.g. from ingest)")
    p.add_argument("--checkpoint", default=None, help="pipeline folder, training run or checkpoint (default: demo)")
    p.add_argument("--out", required=True, help="folder: benchmark.md, benchmark.json, the generated videos")
    p.add_argument("--cross-id", action="store_true",
                   help="also the cross-ID protocol, driven by the test clips' pseudo clips (DATA/pseudo)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N test clips")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="auto, float32, bfloat16")
    _add_metric_arguments(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_benchmark)


def _add_serve_verb(sub) -> None:
    """The `serve` verb's arguments."""
    p = sub.add_parser("serve", help="a web page to animate (needs the ui extra: pip install -e '.[ui]')")
    p.add_argument("--checkpoint", default=None, help="default checkpoint of the page (default: the embedded model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted, per file")
    p.add_argument("--max-seconds", type=float, default=120.0, help="longest driving video accepted")
    _add_placement_args(p)
    p.set_defaults(func=_serve)


def _add_plot_losses_verb(sub) -> None:
    """The `plot-losses` verb's arguments."""
    p = sub.add_parser("plot-losses", help="loss curves of training runs to a PNG")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--smooth", type=int, default=1, help="moving-average window in steps")
    p.add_argument("--title", default=None)
    p.set_defaults(func=_plot_losses)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="directanimator",
                                     description="DirectAnimator: human image animation from raw driving videos")
    sub = parser.add_subparsers(dest="verb", required=True)
    for add in (_add_cues_verb, _add_synth_verb, _add_ingest_verb, _add_caption_verb, _add_preprocess_verb, _add_pseudo_verb, _add_train_verb,
                _add_animate_verb, _add_evaluate_verb, _add_benchmark_verb, _add_serve_verb, _add_plot_losses_verb):
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same unwinding as Ctrl-C, so temporary files and folders go too."""


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


def install_termination_handling() -> None:
    """SIGTERM raises Terminated (main thread only). A signal that lands while Python runs a finalizer
    (`__del__`, a weakref callback: a library's object being collected) has its exception printed as
    "Exception ignored" and dropped, and the job would go on to write its output: such a swallowed
    Ctrl-C or SIGTERM is sent again, to be raised where it can unwind the job."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    previous = sys.unraisablehook

    def resend(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # from another thread, a moment later: sent from here it would be raised inside this hook
            # and dropped again
            number = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
            timer = threading.Timer(0.05, os.kill, (os.getpid(), number))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    sys.unraisablehook = resend


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    install_termination_handling()
    from .cues._native import error_line

    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        error_line(f"error: {exc}")
        return 2
    except TrainingError as exc:
        error_line(f"error: training stopped: {exc}")
        return 3
    except Terminated:
        error_line("error: terminated (SIGTERM); nothing was written")
        return 143
    except KeyboardInterrupt:
        error_line("error: interrupted; nothing was written")
        return 130
    except Exception as exc:  # a bug: say so in one line, details on request
        if os.environ.get("DIRECTANIMATOR_DEBUG") == "1":
            raise
        error_line(f"internal error: {exc.__class__.__name__}: {exc} (set DIRECTANIMATOR_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
