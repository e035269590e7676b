"""experiments/claims.py and claims_report.py: which run comes next, how a run resumes, the paired
bootstrap, the verdicts, Figure 1's speed-up rule and the report built from result files alone."""

import json
import os
import subprocess

import numpy as np
import pytest

from ..scripts import load_experiment


@pytest.fixture
def claims(tmp_path, monkeypatch):
    mod = load_experiment("claims")
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results")
    return mod


def write_result(claims, arm, seed, rows, curve_cross=(), curve_same=(), cpu=3600.0):
    """A result file as run_one writes it, with the given per-triple rows and validation curves."""
    path = claims.result_path(arm, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    mean = {m: float(np.mean([r[m] for r in rows])) for m in claims.METRICS}
    trivial = {k: {m: v for m in claims.METRICS} for k, v in (("still", 14.0), ("pasted", 9.0), ("silhouette", 13.5))}
    trivial["still"]["ssim"] = 0.8
    path.write_text(json.dumps({
        "arm": arm, "seed": seed, "cpu_seconds": {"cross_id": cpu},
        "steps": {"same_id": 2500 if curve_same else 0, "cross_id": 18000},
        "validation": {"same_id": [{"step": s, "val_loss": v} for s, v in curve_same],
                       "cross_id": [{"step": s, "val_loss": v} for s, v in curve_cross]},
        "score": {"mean": mean, "rows": rows, "trivial": trivial}}))


def rows_of(moving, person=None, n=40):
    return [{"ssim": 0.8, "psnr": 22.0, "person_psnr": person if person is not None else moving, "moving_psnr": moving,
             "face_psnr": 14.0} for _ in range(n)]


def test_next_run_skips_results_and_runs_held_by_a_live_process(claims, tmp_path):
    """Tier 1 first, seed by seed; a run with a result file is never started again; a run locked by
    a live process is left to it, a dead process's lock is taken over."""
    plan = claims.planned()
    assert plan[0] == ("full", 0) and {claims.ARMS[a].tier for a, _ in plan[:6]} == {1}
    assert len(plan) == len(set(plan)) and all(s in claims.TIER_SEEDS[claims.ARMS[a].tier] for a, s in plan)
    write_result(claims, "full", 0, rows_of(16.0))
    assert ("full", 0) not in claims.missing() and claims.missing()[0] == ("fig1_a_base_no_s2x", 0)
    work = tmp_path / "work"
    held = claims.claim_lock(work, "fig1_a_base_no_s2x", 0)
    assert held is not None and claims.claim_lock(work, "fig1_a_base_no_s2x", 0) is None
    dead = subprocess.Popen(["true"])
    dead.wait()
    held.write_text(str(dead.pid))
    assert claims.claim_lock(work, "fig1_a_base_no_s2x", 0) is not None
    assert int((work / "locks" / "fig1_a_base_no_s2x_seed0.lock").read_text()) == os.getpid()


def test_run_resumes_an_interrupted_stage_and_reuses_a_finished_teacher(claims, tmp_path):
    """The commands a run issues: a finished same-ID stage is not trained again, a cross-ID stage with
    checkpoints is resumed (--resume), the one-stage arm trains all 20,500 steps without a teacher, and
    every arm's configs carry its overrides and the seed; the CPU time of a stage finished in an
    earlier sitting is counted from its summary."""
    import yaml

    issued = []

    class Recorder(claims.Runner):
        def __call__(self, part, args):
            issued.append((part, [str(a) for a in args]))

    sh = Recorder()
    work, world = tmp_path / "work", tmp_path / "world"
    folder = work / "fig1_b_same_id_no_s2x" / "seed1"
    (folder / "same_id").mkdir(parents=True)
    (folder / "same_id" / "summary.json").write_text('{"cpu_seconds": 1234.5, "cpu_seconds_complete": true}')
    (folder / "cross_id" / "checkpoints").mkdir(parents=True)
    claims.train("fig1_b_same_id_no_s2x", 1, work, world, sh)
    assert [p for p, _ in issued] == ["cross_id"] and sh.cpu == {"same_id": 1234.5}
    assert not sh.complete  # the cross-ID stage (mocked here) wrote no summary: its CPU time is not known
    cmd = issued[0][1]
    assert "--resume" in cmd and cmd[cmd.index("--teacher") + 1] == str(folder / "same_id")
    cross = yaml.safe_load((folder / "cross_id.yaml").read_text())
    assert cross["train"]["s2x"]["weight"] == 0.0 and cross["train"]["seed"] == 1
    assert cross["train"]["validation"]["dataset"] == str(world)
    issued.clear()
    claims.train("fig1_a_base_no_s2x", 0, work, world, sh)
    assert [p for p, _ in issued] == ["cross_id"]
    cmd = issued[0][1]
    assert "--teacher" not in cmd and "--resume" not in cmd and cmd[cmd.index("--max-steps") + 1] == "20500"
    issued.clear()
    claims.train("s5_skeleton_detector_errors", 2, work, world, sh)
    assert [p for p, _ in issued] == ["same_id", "cross_id"]
    for stage in ("same_id", "cross_id"):
        cfg = yaml.safe_load((work / "s5_skeleton_detector_errors" / "seed2" / f"{stage}.yaml").read_text())
        assert cfg["cues"]["pose"] == {**cfg["cues"]["pose"], "mode": "skeleton", "skeleton_errors": True}


def test_paired_bootstrap_on_hand_made_differences():
    """Two seeds that disagree completely: the interval spans both; one seed of known values: the mean
    and an interval inside the values' range; the verdicts read the interval's side of 0."""
    report = load_experiment("claims_report")
    mean, lo, hi = report.paired_bootstrap({0: np.full(40, 2.0), 1: np.full(40, -2.0)})
    assert mean == 0.0 and lo == -2.0 and hi == 2.0  # a bootstrap that keeps the seeds fixed gives [0, 0]
    mean, lo, hi = report.paired_bootstrap({0: np.array([1.0, 2.0, 3.0] * 10)})
    assert mean == pytest.approx(2.0) and 1.5 < lo < 2.0 < hi < 2.5
    assert report.verdict(0.1, 0.4) == "agrees" and report.verdict(-0.4, -0.1) == "disagrees"
    assert report.verdict(-0.1, 0.4) == "cannot tell"


def test_speedup_rule_in_stage_two_and_in_total_steps():
    report = load_experiment("claims_report")
    slow = {"steps": {"same_id": 2500}, "validation": {"same_id": [{"step": 2500, "val_loss": 0.2}],
                                                     "cross_id": [{"step": s, "val_loss": v} for s, v in
                                                                  ((500, 0.15), (1000, 0.12), (1500, 0.11))]}}
    fast = {"steps": {"same_id": 2500}, "validation": {"same_id": [{"step": 2500, "val_loss": 0.2}],
                                                     "cross_id": [{"step": s, "val_loss": v} for s, v in
                                                                  ((500, 0.12), (1000, 0.10), (1500, 0.09))]}}
    s = report.speedup(slow, fast, total=False)
    assert (s["level"], s["slow_steps"], s["fast_steps"], s["speedup"]) == (0.11, 1500, 1000, 1.5)
    t = report.speedup(slow, fast, total=True)
    assert (t["slow_steps"], t["fast_steps"]) == (4000, 3500)
    assert report.speedup(fast, slow, total=False)["speedup"] is None  # never reaches: no ratio


def test_report_from_a_fixture_of_result_files(claims, tmp_path):
    """The report and the README table come from the result files alone: the gate per seed, the
    trivial answers, each arm's paired interval and verdict, Figure 1's speed-ups, what is missing."""
    report = load_experiment("claims_report")
    rng = np.random.default_rng(0)
    curve = [(s, round(0.2 - s / 1e5, 4)) for s in range(500, 18001, 500)]
    for seed in (0, 1):
        full = [dict(r, moving_psnr=17.0 + rng.normal(0, 0.1)) for r in rows_of(17.0)]
        write_result(claims, "full", seed, full, curve, [(2500, 0.21)])
        write_result(claims, "s1_no_face", seed, [dict(r, moving_psnr=r["moving_psnr"] - 1.0) for r in full])
        write_result(claims, "s3_rgb_pose", seed, [dict(r, moving_psnr=r["moving_psnr"] + 0.5) for r in full])
        write_result(claims, "dc_concat", seed, [dict(r, moving_psnr=r["moving_psnr"] + (0.3 if seed else -0.3))
                                                 for r in full])
        write_result(claims, "fig1_b_same_id_no_s2x", seed, full, [(s, round(v + 0.01, 4)) for s, v in curve], [(2500, 0.21)])
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.MARKERS[0]}\nold\n{report.MARKERS[1]}\n\nafter\n")
    out = tmp_path / "claims.md"
    assert report.write_report(claims.RESULTS, out, readme) == 0
    text, top = out.read_text(), readme.read_text()
    verdicts = {r["arm"]: r["verdict"] for r in report.claims_rows(report.load(claims.RESULTS))}
    assert verdicts == {"s1_no_face": "agrees", "s3_rgb_pose": "disagrees", "dc_concat": "cannot tell",
                        "fig1_b_same_id_no_s2x": "cannot tell"}
    assert "| 0 | +3.00 dB |" in text and "| 1 | +3.00 dB |" in text  # person 17 against the best trivial 14
    assert "trivial: reference photo held still" in text and "10 runs so far, 10.0 CPU hours" in top
    assert "| the Face Cue helps | S1: without the Face Cue | 2 | +1.00 [+1.00, +1.00]" in text
    assert "| fig1_b_same_id_no_s2x | full | stage 2 | 0 | 0.0300 | 18000 | 17000 | 1.06x |" in text
    assert "- tier 1: fig1_a_base_no_s2x seed 0" in text
    assert "old" not in top and top.endswith("after\n") and "S1: without the Face Cue" in top
    # the full arm's means over its two seeds next to the trivial answers on the same triples
    assert "| the full method (2 seeds) | 0.800 | 17.00 |" in top
    assert "| trivial: reference photo held still | 0.800 | 14.00 | 14.00 |" in top
    assert "| trivial: driving video pasted | 9.000 | 9.00 | 9.00 |" in top and "| trivial: silhouette fill |" in top
