"""`directanimator <verb>`: parses arguments and hands over; no logic lives here.

Errors the user can fix (`InputError`) print one line on stderr and exit 2. Anything else is a bug:
one line too, exit 1, with the traceback only when DIRECTANIMATOR_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import InputError


def _cues(args: argparse.Namespace) -> int:
    from .config import load_config
    from .cues.files import write_cues

    cfg = load_config(args.config).cues
    if args.size is not None:
        cfg.size = args.size
        cfg.__post_init__()
    report = write_cues(args.reference, args.driving, args.out, cfg, overwrite=args.overwrite,
                        progress=not args.quiet)
    summary = {k: report.as_dict()[k] for k in ("num_frames", "person_frames", "face_frames", "alignment")}
    summary["dropped_frames"] = len(report.dropped_frames)
    summary["ms_per_frame"] = report.ms_per_frame["total"]
    print(f"wrote {args.out}: " + json.dumps(summary))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .synth.world import build_world

    records = build_world(args.out, args.identities, args.motions, args.clips, args.frames, args.size, args.seed,
                          fps=args.fps, preview=args.preview, overwrite=args.overwrite, progress=not args.quiet)
    splits = {s: sum(r.split == s for r in records) for s in ("train", "test")}
    print(f"wrote {args.out}: {len(records)} clips ({splits['train']} train, {splits['test']} test in "
          f"{splits['test'] // 3} cross-ID triples)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="directanimator",
                                     description="DirectAnimator: human image animation from raw driving videos")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("cues", help="driving video + reference photo -> Driving Cue Triplet (paper 3.1)")
    p.add_argument("--reference", required=True, help="reference photo (any image OpenCV reads)")
    p.add_argument("--driving", required=True, help="driving video (any format PyAV reads)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--size", type=int, default=None, help="working size in pixels (default 512)")
    p.add_argument("--config", default=None, help="YAML config (see configs/); unknown keys are errors")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cues)

    p = sub.add_parser("synth", help="write a puppet-world dataset with ground truth")
    p.add_argument("--out", required=True, help="dataset folder (written atomically)")
    p.add_argument("--identities", type=int, default=10)
    p.add_argument("--motions", type=int, default=10)
    p.add_argument("--clips", type=int, default=20, help="train clips + test triples (a fifth are test triples)")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preview", action="store_true", help="also write contact_sheet.png (identities x motions)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, details on request
        if os.environ.get("DIRECTANIMATOR_DEBUG") == "1":
            raise
        print(f"internal error: {exc.__class__.__name__}: {exc} (set DIRECTANIMATOR_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
