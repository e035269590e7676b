"""The decision and the record of experiments/continue_demo.py on hand-made validation rows."""

from __future__ import annotations

import pytest

from ..scripts import load_experiment


def rows(*scores):
    return [{"step": 0, "trivial_answers": {}}] + [
        {"step": s, "val_moving_psnr": m, "val_person_psnr": p} for s, m, p in scores]


def test_a_run_is_installed_only_when_its_best_beats_the_start():
    cd = load_experiment("continue_demo")
    assert cd.decide(rows((0, 17.0, 16.5), (500, 17.2, 16.6), (1000, 17.1, 16.7)))["beats"]
    best = cd.decide(rows((0, 17.0, 16.5), (500, 17.2, 16.6)))["best"]
    assert best["step"] == 500
    assert not cd.decide(rows((0, 17.0, 16.5), (500, 17.03, 16.6)))["beats"]  # inside the margin
    assert not cd.decide(rows((0, 17.0, 16.5), (500, 17.3, 16.4)))["beats"]  # loses person PSNR
    assert not cd.decide(rows((0, 17.5, 16.5), (500, 17.3, 16.6)))["beats"]  # the start stays best
    with pytest.raises(SystemExit, match="no validation row at step 0"):
        cd.decide(rows((500, 17.3, 16.6)))


def test_benchmark_rows_accumulate_in_one_table():
    cd = load_experiment("continue_demo")
    verdict = cd.decide(rows((0, 17.0, 16.5), (500, 17.2, 16.6)))
    text = "# Benchmarks\n\n## Other\n\nkept\n"
    once = cd.add_benchmark_row(text, cd.benchmark_row(6000, 1.5, verdict, True))
    twice = cd.add_benchmark_row(once, cd.benchmark_row(3000, 0.7, verdict, False))
    assert twice.startswith(text.rstrip("\n")) and twice.count(cd.TABLE) == 1
    table = [ln for ln in twice.split(cd.TABLE)[1].splitlines() if ln.startswith("| ")]
    assert table[1].startswith("| 6,000 | 1.50 | 17.00 -> 17.20 (step 500)") and table[1].endswith("| yes |")
    assert table[2].startswith("| 3,000 | 0.70 |") and table[2].endswith("| no |")
