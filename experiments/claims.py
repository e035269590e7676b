"""The paper's claims at toy scale: Figure 1 (Same2X) and the ablations of Tables 3-5, run piece by piece.

    .venv/bin/python experiments/claims.py status
    .venv/bin/python experiments/claims.py run [--arm ARM --seed S] [--commit] [--work out/claims]
    .venv/bin/python experiments/claims.py report

`run` trains and scores one arm at one seed (the next missing one, in tier then seed order, unless
given) and writes `experiments/results/ARM/seedS.json`: the held-out scores triple by triple, the
trivial answers on the same triples, the validation curves, the exact commands and configs, the CPU
time. With `--commit` it commits that one file at once (the repository is the only lasting state).
Two `run`s can go side by side: each claims its run with a lock file under --work. Results already
committed are skipped, so the study fills in over as many sittings as it needs (`run` exits 3 when
none is left to start). `report` rebuilds experiments/reports/claims.md and the README's claims
table from the committed results alone.

The budget is fixed for every arm (BUDGET): the demo recipe at 4 x 128 (configs/demo.yaml, then
configs/demo_cross_id.yaml; the embedded model is the same recipe at twice the width, which costs 2.0
CPU hours a run against 1.2), 2,500 same-ID steps and 18,000 cross-ID steps, one thread, on the puppet world of seed 11 (6,000 clips); an arm without a same-ID stage gets the
same 20,500 steps in its one stage. Scores: the first 40 cross-ID triples of a world of seed 12 (its
identities and motions never trained on), the run's checkpoint chosen on the training world's own
held-out validation triples (moving-region PSNR, as the shipped recipe chooses).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
from directanimator.machine import machine
DA = str(Path(sys.executable).parent / "directanimator")
RESULTS = ROOT / "experiments" / "results"
REPORT = ROOT / "experiments" / "reports" / "claims.md"

BUDGET = {
    "same_id_config": "configs/demo.yaml", "cross_id_config": "configs/demo_cross_id.yaml",
    "same_id_steps": 2500, "cross_id_steps": 18000, "threads": 1,
    "world": ["--identities", "6000", "--motions", "500", "--clips", "6000", "--frames", "17", "--size", "64",
              "--seed", "11"],
    "eval_world": ["--identities", "200", "--motions", "50", "--clips", "200", "--frames", "17", "--size", "64",
                   "--seed", "12"],
    "eval_triples": 40, "eval_seed": 0,
}
METRICS = ("ssim", "psnr", "person_psnr", "moving_psnr", "face_psnr")
TIER_SEEDS = {1: (0, 1, 2), 2: (0, 1, 2), 3: (0, 1)}


@dataclass
class Arm:
    tier: int
    label: str
    variant: dict = field(default_factory=dict)  # overrides of both stages' configs (cues, model)
    cross: dict = field(default_factory=dict)    # overrides of the cross-ID stage's `train`
    same_id: bool = True                         # False: one stage of same_id_steps + cross_id_steps
    claim: str = ""                              # what the paper says of it against the full arm


SKELETON = {"cues": {"pose": {"mode": "skeleton"}}}
ARMS = {
    "full": Arm(1, "full: cue triplet, CueFusion, same-ID then cross-ID with S2X (D = 1 of 4, λ = 0.5)"),
    "fig1_a_base_no_s2x": Arm(1, "Fig. 1 (a): cross-ID from the base model, no S2X, all 20,500 steps",
                              cross={"init": "base", "s2x": {"weight": 0.0}}, same_id=False,
                              claim="Same2X beats cross-ID training from scratch"),
    "fig1_b_same_id_no_s2x": Arm(1, "Fig. 1 (b): same-ID, then cross-ID without S2X", cross={"s2x": {"weight": 0.0}},
                                 claim="the S2X loss helps the cross-ID stage"),
    "fig1_d_new_student_s2x": Arm(1, "Fig. 1 (d): a new student from the base model, S2X against the same-ID teacher",
                                  cross={"init": "base"}, claim="starting the student from the same-ID model helps"),
    "s5_skeleton_exact": Arm(1, "S5: skeleton maps (exact keypoints) instead of the triplet",
                             variant={"cues": {"pose": {"mode": "skeleton", "skeleton_errors": False}}},
                             claim="the triplet beats skeletons"),
    "s5_skeleton_detector_errors": Arm(1, "S5: skeleton maps with a detector's errors (Fig. 1 left)",
                                       variant={"cues": {"pose": {"mode": "skeleton", "skeleton_errors": True}}},
                                       claim="the triplet beats skeletons from a detector"),
    "s1_no_face": Arm(2, "S1: without the Face Cue", {"model": {"use_face_cue": False}}, claim="the Face Cue helps"),
    "s3_rgb_pose": Arm(2, "S3: RGB Pose Cue", {"cues": {"pose": {"mode": "rgb"}}},
                       claim="a gray, low-passed Pose Cue beats RGB"),
    "s6_no_location": Arm(2, "S6: without the Location Cue", {"model": {"use_location_cue": False}},
                          claim="the Location Cue helps"),
    "dc_concat": Arm(2, "Table 5 DC: cues concatenated to the input", {"model": {"injection": "concat"}},
                     claim="CueFusion beats concatenation"),
    "ca_cross_attention": Arm(2, "Table 5 CA: cues through cross-attention", {"model": {"injection": "cross_attention"}},
                              claim="CueFusion beats cross-attention"),
    "s4_gray_no_lowpass": Arm(3, "S4: gray Pose Cue without the low-pass", {"cues": {"pose": {"mode": "gray"}}},
                              claim="the low-pass helps"),
    "s7_hard_mask": Arm(3, "S7: hard Location mask only", {"cues": {"location": {"mode": "hard"}}},
                        claim="the grid-softened mask helps"),
    "d2": Arm(3, "Table 4: S2X at D = 2 of 4", cross={"s2x": {"depth": 2}}, claim="D = 1 of 4 (10 of 42) is best"),
    "d3": Arm(3, "Table 4: S2X at D = 3 of 4", cross={"s2x": {"depth": 3}}, claim="D = 1 of 4 (10 of 42) is best"),
    "lambda_0.1": Arm(3, "Table 4: λ = 0.1", cross={"s2x": {"weight": 0.1}}, claim="λ = 0.5 is best"),
    "lambda_1": Arm(3, "Table 4: λ = 1", cross={"s2x": {"weight": 1.0}}, claim="λ = 0.5 is best"),
}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def result_path(arm: str, seed: int) -> Path:
    return RESULTS / arm / f"seed{seed}.json"


def planned() -> list[tuple[str, int]]:
    """Every (arm, seed) of the study in the order they run: tier by tier, seed by seed, arm by arm."""
    return [(arm, seed) for tier in sorted(TIER_SEEDS) for seed in TIER_SEEDS[tier]
            for arm, a in ARMS.items() if a.tier == tier]


def missing() -> list[tuple[str, int]]:
    return [(a, s) for a, s in planned() if not result_path(a, s).is_file()]


def claim_lock(work: Path, arm: str, seed: int) -> Path | None:
    """A lock file for one run (None when a live process holds it; a dead one's lock is taken over)."""
    lock = work / "locks" / f"{arm}_seed{seed}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return None
            except (ProcessLookupError, ValueError):
                lock.unlink(missing_ok=True)
                continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return lock
    return None


class Runner:
    """Runs commands from the repository root with one thread each, printed first, and adds up their
    CPU time (this process's children)."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.cpu: dict[str, float] = {}
        self.complete = True  # every training stage's CPU time covers all its sittings
        self.env = dict(os.environ, OMP_NUM_THREADS=str(BUDGET["threads"]), MKL_NUM_THREADS=str(BUDGET["threads"]))

    def __call__(self, part: str, args: list) -> None:
        line = " ".join(shlex.quote(str(a)) for a in args)
        print("$ " + line, flush=True)
        self.commands.append(line.replace(str(ROOT) + "/", ""))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=self.env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.cpu[part] = round(self.cpu.get(part, 0.0) + spent, 1)

    def count_run(self, part: str, run: Path | None) -> None:
        """A training run's CPU time over all its sittings (the trainer carries it across resumes in
        its checkpoints; what a stopped sitting spent after its last checkpoint is lost), where that
        is more than this process saw of it (a resumed run, a stage finished in an earlier sitting)."""
        summary = run / "summary.json" if run is not None else None
        if summary is not None and summary.is_file():
            info = json.loads(summary.read_text())
            if info.get("cpu_seconds") is not None:
                self.cpu[part] = round(max(self.cpu.get(part, 0.0), float(info["cpu_seconds"])), 1)
            self.complete &= bool(info.get("cpu_seconds_complete"))
        elif run is not None:
            self.complete = False


def ensure_worlds(work: Path, sh: Runner) -> tuple[Path, Path]:
    """The training world (with its pseudo clips) and the scoring world; both deterministic."""
    world, scoring = work / "world", work / "eval_world"
    if not (world / "manifest.jsonl").is_file():
        sh("data", [DA, "synth", "--out", world, *BUDGET["world"], "--quiet"])
    if not (world / "pseudo" / "manifest.jsonl").is_file():
        sh("data", [DA, "pseudo", "--dataset", world, "--config", ROOT / BUDGET["same_id_config"], "--quiet"])
    if not (scoring / "manifest.jsonl").is_file():
        sh("data", [DA, "synth", "--out", scoring, *BUDGET["eval_world"], "--quiet"])
    return world, scoring


def stage_configs(arm: str, seed: int, folder: Path, world: Path) -> tuple[Path, Path]:
    """The two stages' config files of one run: the recipe's, with the arm's overrides and the seed."""
    a = ARMS[arm]
    run = {"train": {"seed": seed, "validation": {"dataset": str(world)}}}
    same = merge(merge(yaml.safe_load((ROOT / BUDGET["same_id_config"]).read_text()), a.variant), run)
    cross = merge(merge(yaml.safe_load((ROOT / BUDGET["cross_id_config"]).read_text()), a.variant), run)
    cross = merge(cross, {"train": a.cross})
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "same_id.yaml", folder / "cross_id.yaml"
    paths[0].write_text(yaml.safe_dump(same, sort_keys=False))
    paths[1].write_text(yaml.safe_dump(cross, sort_keys=False))
    return paths


def train(arm: str, seed: int, work: Path, world: Path, sh: Runner) -> tuple[Path | None, Path, dict]:
    """Both stages of one run (resumed where a folder is left); returns (same-ID run or None, cross-ID
    run, the configs' text)."""
    a = ARMS[arm]
    folder = work / arm / f"seed{seed}"
    same_cfg, cross_cfg = stage_configs(arm, seed, folder, world)
    same, cross = folder / "same_id", folder / "cross_id"

    def resume(run: Path) -> list[str]:
        return ["--resume"] if (run / "checkpoints").is_dir() else []

    teacher: list = []
    if a.same_id:  # also the teacher of a new student (Fig. 1 d): its steps count in the arm's total
        if not (same / "summary.json").is_file():
            sh("same_id", [DA, "train", "--config", same_cfg, "--stage", "same_id", "--dataset", world,
                           "--out", same, "--max-steps", BUDGET["same_id_steps"], "--quiet", *resume(same)])
        teacher = ["--teacher", same]
    steps = BUDGET["cross_id_steps"] + (0 if a.same_id else BUDGET["same_id_steps"])
    if not (cross / "summary.json").is_file():
        sh("cross_id", [DA, "train", "--config", cross_cfg, "--stage", "cross_id", "--dataset", world,
                        "--out", cross, *teacher, "--max-steps", steps, "--quiet", *resume(cross)])
    for part, run in (("same_id", same if teacher else None), ("cross_id", cross)):
        sh.count_run(part, run)
    configs = {"same_id": same_cfg.read_text() if teacher else None, "cross_id": cross_cfg.read_text()}
    return (same if teacher else None), cross, configs


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def curve(run: Path | None) -> list[dict]:
    """A run's held-out validation rows (its trivial answers' row left out), rounded."""
    if run is None:
        return []
    keep = ("step", "val_loss", "val_ssim", "val_psnr", "val_person_psnr", "val_moving_psnr")
    return [{k: round(r[k], 5) for k in keep if k in r} for r in read_jsonl(run / "validation.jsonl")
            if "val_loss" in r]


def score(cross: Path, scoring: Path) -> dict:
    """The run's chosen checkpoint on the scoring world's first triples, with the trivial answers."""
    from dataclasses import replace

    from directanimator.config import load_config
    from directanimator.eval.puppet import evaluate_triples
    from directanimator.pipeline import DirectAnimatorPipeline

    inference = load_config(cross / "config.yaml").inference
    pipe = DirectAnimatorPipeline.from_pretrained(cross / "best", scheduler=inference.scheduler)
    pipe.config = replace(pipe.config, inference=inference)
    got = evaluate_triples(pipe, scoring, limit=BUDGET["eval_triples"], seed=BUDGET["eval_seed"])
    def rows(rs: list[dict]) -> list[dict]:
        return [{k: (None if r.get(k) is None else round(r[k], 4)) for k in METRICS} for r in rs]

    return {"mean": got["mean"], "rows": rows(got["triples"]), "trivial": got["baselines"],
            "trivial_rows": {k: rows(v) for k, v in got["baseline_triples"].items()}}


def run_one(arm: str, seed: int, work: Path) -> Path:
    """Train and score one arm at one seed; writes its result file (temporary name, then rename)."""
    import fcntl

    import torch

    t0 = time.time()
    sh = Runner()
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "data.lock", "w") as lock:  # one process builds the worlds and a variant's cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        world, scoring = ensure_worlds(work, sh)
        stage_configs(arm, seed, work / arm / f"seed{seed}", world)
        sh("preprocess", [DA, "preprocess", "--dataset", world, "--config", work / arm / f"seed{seed}" / "cross_id.yaml",
                          "--quiet"])
    same, cross, configs = train(arm, seed, work, world, sh)
    torch.set_num_threads(BUDGET["threads"])
    cpu_before = time.process_time()
    scores = score(cross, scoring)
    sh.cpu["score"] = round(time.process_time() - cpu_before, 1)
    result = {
        "arm": arm, "seed": seed, "tier": ARMS[arm].tier, "label": ARMS[arm].label, "budget": BUDGET,
        "commands": sh.commands, "configs": configs, "cpu_seconds": sh.cpu, "cpu_across_sittings": sh.complete,
        "wall_seconds": round(time.time() - t0, 1), "machine": machine(),
        "chosen": json.loads((cross / "best" / "best.json").read_text()),
        "validation": {"same_id": curve(same), "cross_id": curve(cross)},
        "steps": {"same_id": BUDGET["same_id_steps"] if same else 0,
                  "cross_id": json.loads((cross / "summary.json").read_text())["steps"]},
        "score": scores,
    }
    out = result_path(arm, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    return out


def commit(path: Path, message: str, tries: int = 30) -> None:
    """Commit one file alone (other staged work is left as it is); waits out another git's lock."""
    repo = RESULTS.parents[1]
    rel = str(path.relative_to(repo))
    for _ in range(tries):
        add = subprocess.run(["git", "add", rel], cwd=repo, capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", rel], cwd=repo, capture_output=True, text=True).returncode == 0
        if done:
            print(f"committed {rel}", flush=True)
            return
        time.sleep(2)
    print(f"warning: could not commit {rel}; it is written, commit it by hand", file=sys.stderr)


def cmd_run(args) -> int:
    work = (ROOT / args.work).resolve()
    todo = [(args.arm, args.seed)] if args.arm else missing()
    for arm, seed in todo:
        if arm not in ARMS:
            print(f"error: unknown arm {arm!r}; arms: {', '.join(ARMS)}", file=sys.stderr)
            return 2
        if result_path(arm, seed).is_file():
            print(f"{arm} seed {seed}: already done ({result_path(arm, seed)})")
            if args.arm:
                return 0
            continue
        lock = claim_lock(work, arm, seed)
        if lock is None:
            continue  # another process runs it
        try:
            out = run_one(arm, seed, work)
        finally:
            lock.unlink(missing_ok=True)
        print(f"wrote {out}", flush=True)
        if args.commit:
            result = json.loads(out.read_text())
            commit(out, f"Claims study: {arm} seed {seed} ({sum(result['cpu_seconds'].values()) / 3600:.2f} CPU hours)")
        return 0
    print("nothing left to run" if not missing() else "every missing run is taken by another process")
    return 3


def cmd_status(_args) -> int:
    done = [(a, s) for a, s in planned() if result_path(a, s).is_file()]
    hours = sum(sum(json.loads(result_path(a, s).read_text())["cpu_seconds"].values()) for a, s in done) / 3600
    print(f"{len(done)} of {len(planned())} runs done ({hours:.2f} CPU hours); missing:")
    for a, s in missing():
        print(f"  tier {ARMS[a].tier}  {a} seed {s}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="train and score the next missing run (or --arm/--seed)")
    r.add_argument("--arm")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--commit", action="store_true", help="commit the result file when it is written")
    r.add_argument("--work", default="out/claims", help="working folder (worlds, runs; not kept)")
    r.add_argument("--repo", default=str(ROOT),
                   help="the repository whose experiments/results/ gets the result (default: this one); run the code "
                        "from a copy of it (git worktree, PYTHONPATH) while you edit this one")
    sub.add_parser("status", help="what is done and what is missing")
    sub.add_parser("report", help="rebuild experiments/reports/claims.md and the README table from the results")
    args = ap.parse_args(argv)
    global RESULTS
    RESULTS = Path(getattr(args, "repo", ROOT)).resolve() / "experiments" / "results"
    if args.verb == "report":
        from claims_report import write_report

        return write_report()
    return {"run": cmd_run, "status": cmd_status}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
