"""`directanimator benchmark`: refusals (the whole run on real clips is in tests/model/test_real_layout.py)."""

from __future__ import annotations


def test_benchmark_bad_inputs_are_one_error_line(tmp_path, cli_here):
    from directanimator.data.format import ClipRecord, write_manifest

    train_only, with_test = tmp_path / "train_only", tmp_path / "with_test"
    train_only.mkdir()
    with_test.mkdir()
    write_manifest(train_only, [ClipRecord("a", "train", 30.0, 64, 9)])
    write_manifest(with_test, [ClipRecord("b", "test", 30.0, 64, 9)])
    out = tmp_path / "out"
    for args, message in (([tmp_path / "nowhere"], "error: not a dataset"),
                          ([train_only], "error: "),
                          ([with_test, "--limit", "0"], "error: --limit must be at least 1"),
                          ([with_test, "--cross-id"], "error: no pseudo clips")):
        r = cli_here("benchmark", *args, "--out", out, "--quiet")
        assert r.returncode == 2 and r.stderr.startswith(message), (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
        assert not out.exists()
