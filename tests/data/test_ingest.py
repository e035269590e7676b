"""`directanimator ingest`: real videos and frame folders to clips, split by source, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from directanimator.assets import WALK_VIDEO
from directanimator.data.format import read_manifest
from directanimator.video import VideoWriter, iter_frames, probe_video, save_image

from ..conftest import ROOT
from ..media import set_display_rotation

TWO_PEOPLE = ROOT / "tests" / "data" / "two_people.mp4"
SHORT = ["--min-seconds", "1", "--max-seconds", "4"]


def walk_frames() -> list[np.ndarray]:
    return list(iter_frames(WALK_VIDEO))


def write_video(path, frames, fps=30):
    with VideoWriter(path, fps, frames[0].shape[1], frames[0].shape[0], crf=18) as w:
        for f in frames:
            w.write(f)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One of each: a single person, several people, a scene cut, a phone-rotated portrait video,
    a frame folder and a broken file."""
    src = tmp_path_factory.mktemp("sources")
    walk = walk_frames()
    (src / "two_people.mp4").write_bytes(TWO_PEOPLE.read_bytes())
    write_video(src / "long.mp4", (walk + walk[::-1]) * 2)  # 6 s back and forth: two clips of one source
    crop = [np.ascontiguousarray(f[40:296, 40:296]) for f in list(iter_frames(TWO_PEOPLE))[:45]]
    write_video(src / "cut.mp4", walk + crop)  # the walk, then another scene
    # a phone's portrait video: stored sideways (256 x 192), its display matrix turning it upright
    write_video(src / "sideways.mp4", [np.ascontiguousarray(np.rot90(f[:, 32:224])) for f in walk])
    set_display_rotation(src / "sideways.mp4", src / "rotated.mp4", 90)
    (src / "sideways.mp4").unlink()
    (src / "frames_walk").mkdir()
    for i, f in enumerate(walk):
        save_image(src / "frames_walk" / f"{i + 1}.png", f)  # numbered from 1, no zero padding
    (src / "broken.mp4").write_bytes(TWO_PEOPLE.read_bytes()[:20_000])
    (src / "notes.txt").write_text("not a video")
    return src


@pytest.fixture(scope="module")
def ingested(sources, tmp_path_factory):
    from directanimator.cli import main

    out = tmp_path_factory.mktemp("ingested") / "data"
    code = main(["ingest", str(sources), "--out", str(out), *SHORT, "--test-fraction", "0.4", "--quiet"])
    assert code == 0
    return out, json.loads((out / "ingest_report.json").read_text())


def verdicts(report, source_id):
    rep = next(r for r in report["per_source"] if r["source_id"] == source_id)
    return rep, [c["reason"] for c in rep["clips"]]


@pytest.mark.slow
def test_ingest_keeps_one_person_drops_the_rest_and_says_why(ingested):
    out, report = ingested
    assert verdicts(report, "frames_walk")[1] == ["kept"]
    two, reasons = verdicts(report, "two_people")
    # the man alone for about a second and a half, then the woman walks past him: several people
    assert reasons[0] == "several people" and two["clips"][0]["several_fraction"] >= 0.3
    cut, reasons = verdicts(report, "cut")
    assert cut["scene_cuts"] == [45] and [(c["start"], c["end"]) for c in cut["clips"]] == [(0, 45), (45, 90)]
    assert reasons[0] == "kept"  # the walk; no clip spans the cut
    assert verdicts(report, "long")[1] == ["kept", "kept"]
    broken, reasons = verdicts(report, "broken")
    assert broken["error"].startswith("unreadable") and reasons == []
    assert "notes" not in {r["source_id"] for r in report["per_source"]}
    assert report["verdicts"]["unreadable"] == 1
    md = (out / "ingest_report.md").read_text()
    assert "several people" in md and "unreadable" in md and "| kept |" in md


@pytest.mark.slow
def test_ingested_clips_are_in_the_dataset_format_upright_and_split_by_source(ingested, sources):
    out, report = ingested
    records = read_manifest(out)
    kept = {c["clip_id"] for r in report["per_source"] for c in r["clips"] if c["reason"] == "kept"}
    assert {r.clip_id for r in records} == kept
    for r in records:
        info = probe_video(out / "clips" / r.clip_id / "video.mp4")
        assert info.num_frames == r.num_frames and r.size == max(info.width, info.height)
        assert json.loads((out / "clips" / r.clip_id / "meta.json").read_text())["clip_id"] == r.clip_id
    rotated = next(r for r in records if r.extra["source_id"] == "rotated")
    info = probe_video(out / "clips" / rotated.clip_id / "video.mp4")
    assert (info.width, info.height) == (192, 256) and info.rotation == 0  # written upright
    first = next(iter_frames(out / "clips" / rotated.clip_id / "video.mp4")).astype(float)
    upright = walk_frames()[0][:, 32:224].astype(float)
    assert np.abs(first - upright).mean() < 6
    sides = {}
    for rep in report["per_source"]:
        sides.setdefault(rep["source_id"], set()).add(rep["split"])
    for r in records:
        sides[r.extra["source_id"]].add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {r.split for r in records} == {"train", "test"}


def test_split_by_source_never_shares_a_source(tmp_path):
    from directanimator.data.ingest import Source, split_sources

    sources = [Source(tmp_path / f"v{i}.mp4", f"v{i}", "video") for i in range(40)]
    for fraction in (0.0, 0.1, 0.25, 0.5):
        split = split_sources(sources, fraction, seed=3)
        assert set(split) == {s.source_id for s in sources}
        assert sum(v == "test" for v in split.values()) == (0 if fraction == 0 else int(np.ceil(fraction * 40)))
    assert split_sources(sources[:2], 0.1, 0) != {"v0": "train", "v1": "train"}  # two sources: one tests


def test_plan_clips_cuts_at_scene_cuts_and_by_length():
    from directanimator.data.ingest import IngestSettings, plan_clips

    s = IngestSettings(min_seconds=1, max_seconds=2)
    people = {i: (True, False) for i in range(0, 200, 5)}
    people.update({i: (True, True) for i in range(150, 200, 5)})
    clips = plan_clips(200, [70], 30, s, "v", people)
    assert [(c.start, c.end, c.reason) for c in clips] == [
        (0, 60, "kept"), (60, 70, "too short"), (70, 130, "kept"), (130, 190, "several people"),
        (190, 200, "too short")]
    assert [c.reason for c in plan_clips(200, [70], 30, IngestSettings(min_seconds=1, max_seconds=2,
                                                                       subject="largest"), "v", people)][3] == "kept"
    none = {i: (False, False) for i in range(0, 200, 5)}
    assert {c.reason for c in plan_clips(200, [], 30, s, "v", none)} == {"no person", "too short"}


@pytest.mark.slow
def test_ingest_resumes_and_a_stopped_run_leaves_nothing_half_written(tmp_path, monkeypatch):
    from directanimator.data import ingest as mod

    src = tmp_path / "src"
    src.mkdir()
    walk = walk_frames()
    for name in ("a", "b"):
        write_video(src / f"{name}.mp4", walk)
    out = tmp_path / "data"
    real = mod.write_clips
    calls = []

    def stop_on_second(*args, **kwargs):
        calls.append(args[5].source_id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM (the CLI's Terminated) would
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "write_clips", stop_on_second)
    with pytest.raises(KeyboardInterrupt):
        mod.ingest(src, out, mod.IngestSettings(min_seconds=1, max_seconds=4), progress=False)
    assert sorted(p.name for p in (out / "ingest").iterdir()) == ["a.json"]
    assert not (out / "manifest.jsonl").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    calls.clear()
    monkeypatch.setattr(mod, "write_clips", lambda *a, **k: (calls.append(a[5].source_id), real(*a, **k))[1])
    summary = mod.ingest(src, out, mod.IngestSettings(min_seconds=1, max_seconds=4), progress=False)
    assert calls == ["b"]  # a was done before
    assert summary["clips"] == 2 and [r.clip_id for r in read_manifest(out)] == ["a_000", "b_000"]


def test_ingest_bad_inputs_are_one_error_line(tmp_path, cli_here):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    for args, message in (([str(tmp_path / "missing"), "--out", str(out)], "error: source folder not found"),
                          ([str(empty), "--out", str(out)], "error: no videos or frame folders in"),
                          ([str(empty), "--out", str(out), "--min-seconds", "9", "--max-seconds", "3"],
                           "error: --min-seconds must be above 0 and at most --max-seconds"),
                          ([str(empty), "--out", str(out), "--subject", "nobody"], "error: subject must be")):
        r = cli_here("ingest", *args)
        assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not out.exists()
