"""`directanimator caption` and `animate --caption-model` with a tiny random Qwen2-VL in the layout of
a Hugging Face checkpoint folder."""

from __future__ import annotations

import pytest

from directanimator.assets import ASTRONAUT, WALK_VIDEO
from directanimator.data.format import clip_dir, read_manifest

from ..qwen2vl_folder import make_tiny_qwen2_vl


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return make_tiny_qwen2_vl(tmp_path_factory.mktemp("models") / "Qwen2-VL-tiny")


@pytest.fixture
def world(tmp_path):
    from directanimator.synth.world import build_world

    root = tmp_path / "world"
    build_world(root, identities=3, motions=3, clips=3, frames=9, size=64, seed=1, progress=False)
    return root


def test_caption_writes_a_caption_per_clip_and_resumes(world, qwen, cli_here):
    records = read_manifest(world)
    r = cli_here("caption", world, "--model", qwen, "--batch-size", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"{len(records)} new, 0 already captioned" in r.stdout
    captions = {rec.clip_id: (clip_dir(world, rec.clip_id) / "caption.txt").read_text().strip() for rec in records}
    assert all(captions.values())
    assert {rec.clip_id: rec.extra["caption"] for rec in read_manifest(world)} == captions
    (clip_dir(world, records[0].clip_id) / "caption.txt").unlink()  # as if stopped before this clip
    r = cli_here("caption", world, "--model", qwen, "--quiet")
    assert r.returncode == 0 and f"1 new, {len(records) - 1} already captioned" in r.stdout, r.stdout
    assert (clip_dir(world, records[0].clip_id) / "caption.txt").read_text().strip() == captions[records[0].clip_id]


def test_captions_do_not_depend_on_the_batch(world, qwen):
    from directanimator.data.caption import spread_frames
    from directanimator.model.captioner import Captioner

    c = Captioner(qwen, "Describe the person.", max_new_tokens=8)
    clips = [clip_dir(world, r.clip_id) / "video.mp4" for r in read_manifest(world)[:3]]
    items = [spread_frames(v, 3) for v in clips]
    assert [len(i) for i in items] == [3, 3, 3]
    assert c(items) == [c([i])[0] for i in items]


def test_caption_bad_inputs_are_one_error_line(world, tmp_path, qwen, cli_here):
    before = (world / "manifest.jsonl").read_text()
    for args, message in (([world], "error: captioning needs a vision-language model folder: pass --model PATH"),
                          ([world, "--model", tmp_path / "nothing"], "error: "),
                          ([tmp_path / "nowhere", "--model", qwen], "error: not a dataset"),
                          ([world, "--model", qwen, "--batch-size", "0"], "error: --batch-size must be at least 1")):
        r = cli_here("caption", *args)
        assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert (world / "manifest.jsonl").read_text() == before
    assert not list(world.rglob("caption.txt"))


@pytest.mark.slow
def test_animate_captions_the_reference_with_caption_model(tmp_path, qwen, cli_here):
    out = tmp_path / "a.mp4"
    r = cli_here("animate", "--reference", ASTRONAUT, "--driving", WALK_VIDEO, "--out", out, "--steps", "1",
                 "--caption-model", qwen, "--quiet")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("caption of the reference: "))
    assert len(line) > len("caption of the reference: ") and out.is_file()
    r = cli_here("animate", "--reference", ASTRONAUT, "--driving", WALK_VIDEO, "--out", tmp_path / "b.mp4",
                 "--caption-model", tmp_path / "none")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and not (tmp_path / "b.mp4").exists()
    assert len(r.stderr.strip().splitlines()) == 1
