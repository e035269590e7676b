"""experiments/reports/claims.md and the README's claims table, from experiments/results/ alone.

    .venv/bin/python experiments/claims.py report

Every comparison is paired: an arm against the full arm on the same scoring triples at the same
training seeds. The interval is a two-level bootstrap (seeds resampled, then triples within each
seed; 10,000 draws, fixed generator) of the mean difference full - arm, 95% percentile interval. A
claim that the full arm is better "agrees" when the whole interval is above 0, "disagrees" when it is
below, and "cannot tell" when it covers 0. The verdict is read on moving-region PSNR (where a still
photo is wrong by construction, so it measures following the motion); the other metrics' intervals
are shown beside it.

Figure 1's speed-up, the rule: the level is the slower arm's last held-out validation loss (the
denoising loss on the training world's held-out cross-ID triples, every 500 steps); the faster arm's
steps are those of its first validation at or below that level; speed-up = slower arm's steps /
faster arm's steps. In stage-2 steps, both arms' cross-ID steps; in total steps, the same-ID steps
counted too (the full arm's same-ID validation rows come first on that axis).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from claims import ARMS, BUDGET, METRICS, RESULTS, REPORT, ROOT, missing

README = ROOT / "README.md"
MARKERS = ("<!-- claims table: experiments/claims.py report -->", "<!-- end of claims table -->")
NAMES = {"ssim": "SSIM", "psnr": "PSNR", "person_psnr": "person PSNR", "moving_psnr": "moving PSNR",
         "face_psnr": "face PSNR"}
TRIVIAL = {"still": "trivial: reference photo held still", "pasted": "trivial: driving video pasted",
           "silhouette": "trivial: silhouette fill"}
GATE_DB = 0.5


def load(results: Path | None = None) -> dict[str, dict[int, dict]]:
    """arm -> seed -> result, for every result file present."""
    found: dict[str, dict[int, dict]] = {}
    for path in sorted((results or RESULTS).glob("*/seed*.json")):
        r = json.loads(path.read_text())
        found.setdefault(r["arm"], {})[int(r["seed"])] = r
    return found


def paired_bootstrap(diffs: dict[int, np.ndarray], draws: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-triple differences over seeds and triples, and its 95% interval: seeds resampled
    with replacement, then triples within each drawn seed."""
    rng = np.random.default_rng(seed)
    per_seed = [np.asarray(d, float) for _, d in sorted(diffs.items())]
    mean = float(np.mean([d.mean() for d in per_seed]))
    stats = np.empty(draws)
    for i in range(draws):
        picked = rng.integers(0, len(per_seed), len(per_seed))
        stats[i] = np.mean([per_seed[j][rng.integers(0, len(per_seed[j]), len(per_seed[j]))].mean() for j in picked])
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return mean, float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
    """Of the claim "the full arm is better" from the interval of full - arm."""
    return "agrees" if lo > 0 else "disagrees" if hi < 0 else "cannot tell"


def differences(full: dict[int, dict], arm: dict[int, dict], metric: str) -> dict[int, np.ndarray]:
    """Per shared seed, full - arm on each scoring triple (triples where either lacks the metric left out)."""
    out = {}
    for seed in sorted(set(full) & set(arm)):
        a, b = full[seed]["score"]["rows"], arm[seed]["score"]["rows"]
        d = [x[metric] - y[metric] for x, y in zip(a, b) if x[metric] is not None and y[metric] is not None]
        if d:
            out[seed] = np.array(d)
    return out


def first_at_or_below(rows: list[tuple[int, float]], level: float) -> int | None:
    return next((s for s, v in rows if v <= level), None)


def loss_curve(result: dict, total: bool) -> list[tuple[int, float]]:
    """(step, validation loss) of a run: its cross-ID stage, or (total) both stages end to end."""
    same = result["validation"]["same_id"] if total else []
    offset = result["steps"]["same_id"] if total else 0
    return ([(r["step"], r["val_loss"]) for r in same] +
            [(r["step"] + offset, r["val_loss"]) for r in result["validation"]["cross_id"]])


def speedup(slow: dict, fast: dict, total: bool) -> dict:
    """Steps the slower run needed to reach its last validation loss / steps the faster one needed."""
    s, f = loss_curve(slow, total), loss_curve(fast, total)
    level = s[-1][1]
    slow_steps, fast_steps = first_at_or_below(s, level), first_at_or_below(f, level)
    return {"level": level, "slow_steps": slow_steps, "fast_steps": fast_steps,
            "speedup": slow_steps / fast_steps if fast_steps else None}


def fmt_mean(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def digits(metric: str) -> int:
    return 3 if metric == "ssim" else 2


def trivial_scores(found: dict[str, dict[int, dict]]) -> dict[str, dict[str, float]]:
    """The trivial answers' scores: every result holds them, on the same scoring triples."""
    return next(r for seeds in found.values() for r in seeds.values())["score"]["trivial"]


def scores_table(found: dict[str, dict[int, dict]]) -> list[str]:
    """Every arm's mean scores (mean ± sd over seeds) and the trivial answers on the same triples."""
    lines = ["| arm | seeds | " + " | ".join(NAMES[m] + " ↑" for m in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    trivial = trivial_scores(found)
    for key, label in TRIVIAL.items():
        lines.append(f"| {label} | | " + " | ".join(f"{trivial[key][m]:.{digits(m)}f}" for m in METRICS) + " |")
    for arm in ARMS:
        if arm in found:
            seeds = found[arm]
            lines.append(f"| {ARMS[arm].label} | {len(seeds)} | " + " | ".join(
                fmt_mean([r["score"]["mean"][m] for r in seeds.values()], digits(m)) for m in METRICS) + " |")
    return lines


def gate_lines(found: dict[str, dict[int, dict]]) -> list[str]:
    """Does the full arm follow the motion: its margin over the best trivial answer, seed by seed."""
    lines = [f"Gate (every arm must be a model that follows the motion): the full arm beats all three trivial "
             f"answers by at least {GATE_DB} dB on person and moving-region PSNR.", "",
             "| full arm, seed | person PSNR margin | moving PSNR margin | gate |", "|---|---|---|---|"]
    for seed, r in sorted(found.get("full", {}).items()):
        m = {k: r["score"]["mean"][k] - max(t[k] for t in r["score"]["trivial"].values())
             for k in ("person_psnr", "moving_psnr")}
        ok = min(m.values()) >= GATE_DB
        lines.append(f"| {seed} | {m['person_psnr']:+.2f} dB | {m['moving_psnr']:+.2f} dB | {'met' if ok else 'not met'} |")
    return lines


def claims_rows(found: dict[str, dict[int, dict]]) -> list[dict]:
    """One row per arm compared with the full arm: the claim, seeds, intervals, the verdict."""
    rows = []
    for arm, a in ARMS.items():
        if arm == "full" or arm not in found or "full" not in found:
            continue
        intervals = {m: paired_bootstrap(d) for m in ("moving_psnr", "person_psnr", "ssim", "face_psnr")
                     if (d := differences(found["full"], found[arm], m))}
        if "moving_psnr" not in intervals:
            continue
        seeds = sorted(set(found["full"]) & set(found[arm]))
        rows.append({"arm": arm, "claim": a.claim, "label": a.label, "seeds": seeds, "intervals": intervals,
                     "verdict": verdict(*intervals["moving_psnr"][1:])})
    return rows


def interval(t: tuple[float, float, float], digits: int = 2) -> str:
    return f"{t[0]:+.{digits}f} [{t[1]:+.{digits}f}, {t[2]:+.{digits}f}]"


def claims_table(rows: list[dict]) -> list[str]:
    lines = ["| the paper's claim | arm against the full arm | seeds | full - arm, moving PSNR (dB) [95%] | "
             "person PSNR | SSIM | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        i = r["intervals"]
        lines.append(f"| {r['claim']} | {r['label']} | {len(r['seeds'])} | {interval(i['moving_psnr'])} | "
                     f"{interval(i['person_psnr'])} | {interval(i['ssim'], 3)} | {r['verdict']} |")
    return lines


def figure1_lines(found: dict[str, dict[int, dict]]) -> list[str]:
    pairs = (("fig1_b_same_id_no_s2x", "full", False), ("fig1_b_same_id_no_s2x", "full", True),
             ("fig1_a_base_no_s2x", "full", True), ("fig1_d_new_student_s2x", "full", True))
    lines = ["| slower arm | faster arm | steps counted | seed | level (val loss) | slower's steps | "
             "faster's steps | speed-up |", "|---|---|---|---|---|---|---|---|"]
    for slow, fast, total in pairs:
        for seed in sorted(set(found.get(slow, {})) & set(found.get(fast, {}))):
            s = speedup(found[slow][seed], found[fast][seed], total)
            sp = "not reached" if s["speedup"] is None else f"{s['speedup']:.2f}x"
            lines.append(f"| {slow} | {fast} | {'total' if total else 'stage 2'} | {seed} | {s['level']:.4f} | "
                         f"{s['slow_steps']} | {s['fast_steps'] or '-'} | {sp} |")
    return lines if len(lines) > 2 else ["No pair of Figure 1 arms has been run at the same seed yet."]


def run_count(found: dict[str, dict[int, dict]]) -> int:
    return sum(len(seeds) for seeds in found.values())


def cpu_hours(found: dict[str, dict[int, dict]]) -> float:
    return sum(sum(r["cpu_seconds"].values()) for seeds in found.values() for r in seeds.values()) / 3600


def cpu_note(found: dict[str, dict[int, dict]]) -> str:
    """Which runs' CPU time is a lower bound: recorded before a training stage's CPU time was carried
    across the sittings of a resumed run (their earlier sittings, and a stage finished in one, are
    missing)."""
    partial = [f"{arm} seed {seed}" for arm, seeds in found.items() for seed, r in sorted(seeds.items())
               if not r.get("cpu_across_sittings")]
    return (f" (a lower bound: {', '.join(partial)} counted only the training of their last sitting)"
            if partial else "")


def write_report(results: Path | None = None, report: Path | None = None, readme: Path | None = None) -> int:
    found = load(results)
    report, readme = report or REPORT, readme or README
    if not found:
        print("error: no results in experiments/results/ yet: run `experiments/claims.py run` first")
        return 2
    rows = claims_rows(found)
    runs = run_count(found)
    budget = (f"{BUDGET['same_id_steps']:,} same-ID + {BUDGET['cross_id_steps']:,} cross-ID steps "
              f"({BUDGET['same_id_config']}, {BUDGET['cross_id_config']}), one thread; scored on the first "
              f"{BUDGET['eval_triples']} cross-ID triples of a puppet world never trained on")
    text = ["# The paper's claims at toy scale", "",
            "Generated by `.venv/bin/python experiments/claims.py report` from experiments/results/ "
            f"({runs} run{'s' if runs != 1 else ''}, {cpu_hours(found):.1f} CPU hours{cpu_note(found)}). Budget of every arm: {budget}. "
            "How the runs are made, the intervals and the speed-up rule: experiments/claims.py and "
            "experiments/claims_report.py.", "", "## Does the full arm follow the motion?", "",
            *gate_lines(found), "", "## Scores (mean ± sd over seeds), with the trivial answers", "",
            *scores_table(found), "", "## The claims: paired against the full arm", "",
            *(claims_table(rows) if rows else ["No arm has been run at a seed the full arm has yet."]), "",
            "## Figure 1: how fast each arm reaches the held-out cross-ID validation loss", "",
            *figure1_lines(found), "", "Why the S2X term does little at this scale, measured on the full arm's own "
            "training batches (how much the cues set the tokens at its depth, how far pseudo cues move them, its "
            "gradient next to the denoising loss's): [s2x_probe.md](s2x_probe.md).", "", "## Still to run", "",
            *([f"- tier {ARMS[a].tier}: {a} seed {s}" for a, s in missing()] or ["Nothing."]), ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(text))
    update_readme(readme, found, rows)
    print(f"wrote {report} and the claims table of {readme}")
    return 0


def full_and_trivial(found: dict[str, dict[int, dict]]) -> list[str]:
    """The full arm's scores (mean over its seeds) next to the trivial answers on the same triples."""
    keys = ("ssim", "person_psnr", "moving_psnr")
    lines = ["| answer, on the same held-out triples | " + " | ".join(NAMES[m] for m in keys) + " |",
             "|---|" + "---|" * len(keys)]
    if "full" in found:
        seeds = found["full"]
        lines.append(f"| the full method ({len(seeds)} seed{'s' if len(seeds) != 1 else ''}) | " + " | ".join(
            f"{statistics.mean(r['score']['mean'][m] for r in seeds.values()):.{digits(m)}f}" for m in keys) + " |")
    trivial = trivial_scores(found)
    for key, label in TRIVIAL.items():
        lines.append(f"| {label} | " + " | ".join(f"{trivial[key][m]:.{digits(m)}f}" for m in keys) + " |")
    return lines


def update_readme(readme: Path, found: dict[str, dict[int, dict]], rows: list[dict]) -> None:
    """The README's tables between its two markers, replaced (the markers must be there): the full arm
    with the trivial answers, then the claims."""
    text = readme.read_text()
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    runs = run_count(found)
    body = [f"{runs} run{'s' if runs != 1 else ''} so far, {cpu_hours(found):.1f} CPU hours; full report: "
            "[experiments/reports/claims.md](experiments/reports/claims.md).", "",
            *full_and_trivial(found), "",
            *(claims_table(rows) if rows else ["No comparison has both arms run yet."])]
    readme.write_text(text[:start] + "\n" + "\n".join(body) + "\n" + text[end:])
