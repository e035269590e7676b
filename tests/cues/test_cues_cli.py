"""End to end: `directanimator cues` on the bundled real clip, and every bad input it must refuse."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors import safe_open

from directanimator.assets import ASTRONAUT, WALK_VIDEO
from directanimator.cli import main
from directanimator.cues.files import load_cues
from directanimator.video import iter_frames, probe_video

from ..conftest import ROOT
from ..media import write_clip

pytestmark = pytest.mark.slow


def run(args, capsys):
    code = main(["cues", "--quiet", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture(scope="module")
def walk_frames():
    return list(iter_frames(WALK_VIDEO))


@pytest.fixture(scope="module")
def walk_cues(tmp_path_factory):
    out = tmp_path_factory.mktemp("cues") / "walk"
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(out),
                 "--size", "256"]) == 0
    return out


def test_real_clip_finds_person_and_face(walk_cues):
    report = json.loads((walk_cues / "report.json").read_text())
    n = report["num_frames"]
    assert n == 45 and report["fps"] == 30
    assert report["person_frames"] >= 0.9 * n
    # The dancer faces the camera in every frame (checked by eye); his face is ~12 px tall.
    assert report["face_frames"] >= 0.95 * n
    assert report["reference"]["face_found"]
    assert len(report["dropped_frames"]) < 0.3 * n
    for key in ("alignment", "ms_per_frame", "models", "dropped_frames"):
        assert key in report
    assert set(report["ms_per_frame"]) >= {"decode", "segment", "face_detect", "pose_cue", "face_cue",
                                           "location_cue", "write", "total"}
    assert report["alignment"]["scale"] > 1.0  # the astronaut is bigger in her photo than the dancer
    for field, form in report["box_formats"].items():  # each box's order is written in the report itself
        section, _, key = field.partition(".")
        assert (key in report[section]) if key else section in report, field
    person, face = report["reference"]["person_box"], report["reference"]["face_box"]
    assert person[0] < face[0] < face[2] < person[1] and person[2] <= face[1] < face[3] < person[3]


def test_detection_runs_at_a_detection_friendly_size_whatever_the_working_size(walk_cues, tmp_path):
    """At 64 px the dancer's face is a few pixels: detected at the working size it was found in 2 of
    45 frames and the alignment scale came out 1.28 instead of 1.37. Detection at
    cues.segmentation.detect_size (256) finds the same person and face at every working size."""
    big = json.loads((walk_cues / "report.json").read_text())
    out = tmp_path / "small"
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(out),
                 "--size", "64"]) == 0
    small = json.loads((out / "report.json").read_text())
    assert small["face_frames"] >= 0.95 * small["num_frames"] and small["person_frames"] == big["person_frames"]
    assert abs(small["alignment"]["scale"] / big["alignment"]["scale"] - 1) < 0.02
    # the reference's face box and person box agree too, in working pixels
    rb, sb = np.array(big["reference"]["person_box"]) * 64 / 256, np.array(small["reference"]["person_box"])
    assert np.abs(rb - sb).max() <= 1.5
    assert small["reference"]["face_found"]
    cues = load_cues(out / "cues.safetensors")
    assert cues["body_mask"].shape == (45, 64, 64) and cues["face_valid"].sum() == small["face_frames"]


def two_people_clip(path, walk_frames, frames=20):
    """The bundled dancer twice: as he is on the left, mirrored and a little smaller on the right."""
    left = walk_frames[:frames]
    out = []
    for f in left:
        right = np.empty_like(f)
        right[:] = f[:, :1].mean(axis=(0, 1)).astype(np.uint8)
        right[26:256, 13:243] = cv2.resize(cv2.flip(f, 1), (230, 230))
        out.append(np.concatenate([f, right], axis=1))
    write_clip(path, out)
    return path


def test_subject_choice_for_the_driving_video_and_the_reference(tmp_path, capsys, walk_frames):
    """--subject / --reference-subject: by default the largest person; 1 = the second from the left,
    X,Y = the one at that point; the report says which was followed; a choice nobody fits is one error line."""
    clip = two_people_clip(tmp_path / "two.mp4", walk_frames)
    boxes = {}
    for sub in ("auto", "1", "400,150"):
        out = tmp_path / f"s{sub.replace(',', '_')}"
        assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(clip), "--out", str(out),
                     "--size", "128", "--subject", sub]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["subject"]["rule"] == sub and report["person_frames"] >= 18
        boxes[sub] = report["subject"]["first_box"]  # [x0, x1, y0, y1] in source pixels (512 x 256)
    assert boxes["auto"][1] <= 256 < boxes["1"][0] and boxes["1"] == boxes["400,150"]
    capsys.readouterr()  # the runs' warnings (the astronaut's close-up against whole bodies: scale 2.8)
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", clip, "--size", "128", "--subject", "5"],
                 "--subject 5")
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", clip, "--subject", "tallest"],
                 "subject must be auto, largest, center")
    # a photo of two people: the one on the right when asked
    from directanimator.video import load_image, save_image

    a, b = load_image(ASTRONAUT), load_image(ROOT / "tests" / "data" / "grace_hopper.jpg")
    h = 256
    pair = np.concatenate([cv2.resize(a, (a.shape[1] * h // a.shape[0], h)), cv2.resize(b, (b.shape[1] * h // b.shape[0], h))], 1)
    save_image(tmp_path / "pair.png", pair)
    left_w = a.shape[1] * h // a.shape[0]
    centres = {}
    for sub in ("0", "1"):
        out = tmp_path / f"r{sub}"
        assert main(["cues", "--quiet", "--reference", str(tmp_path / "pair.png"), "--driving", str(WALK_VIDEO),
                     "--out", str(out), "--size", "128", "--reference-subject", sub]) == 0
        ref = json.loads((out / "report.json").read_text())["reference"]
        lb = ref["letterbox"]
        x0, x1 = ((np.array(ref["person_box"][:2]) - lb["pad_x"]) / lb["scale"])
        centres[sub] = (x0 + x1) / 2
    assert centres["0"] < left_w < centres["1"]


def test_touching_people_are_told_apart_by_their_faces():
    from directanimator.cues.segment import SubjectRule, select_subject

    fg = np.zeros((100, 200), bool)
    fg[20:90, 40:100] = True    # person A
    fg[30:90, 100:150] = True   # person B, touching A: one connected blob
    faces = [(70.0, 30.0), (125.0, 40.0)]
    whole = select_subject(fg, None, 50)
    assert whole.sum() == fg.sum()  # without faces: one subject
    a = select_subject(fg, None, 50, SubjectRule("0"), faces)
    b = select_subject(fg, None, 50, SubjectRule("1"), faces)
    assert a.any() and b.any() and not (a & b).any() and (a | b).sum() == fg.sum()
    assert np.nonzero(a)[1].max() < np.nonzero(b)[1].min()
    assert select_subject(fg, None, 50, SubjectRule("largest"), faces).sum() == a.sum()  # A is larger
    # tracking keeps B in the next frame even though A is larger
    assert np.array_equal(select_subject(fg, b, 50, SubjectRule("auto"), faces), b)


def test_outputs_are_complete_and_consistent(walk_cues):
    names = sorted(p.name for p in walk_cues.iterdir())
    assert names == [".directanimator-output", "config.yaml", "cues.safetensors", "face_cue.mp4", "location_cue.mp4",
                     "pose_cue.mp4", "preview.png", "report.json"]
    for name in ("pose_cue", "face_cue", "location_cue"):
        info = probe_video(walk_cues / f"{name}.mp4")
        assert info.fps == 30 and info.has_audio  # same timeline as the driving video: audio kept
        assert sum(1 for _ in iter_frames(walk_cues / f"{name}.mp4")) == 45
    cues = load_cues(walk_cues / "cues.safetensors")
    assert cues["pose_cue"].shape == (45, 256, 256) and cues["face_cue"].shape == (45, 256, 256, 3)
    assert cues["body_mask"].shape == (45, 256, 256) and cues["body_mask"].max() <= 1.0
    report = json.loads((walk_cues / "report.json").read_text())
    # Dropped frames have a zero pose cue and are flagged.
    for i in report["dropped_frames"]:
        assert not cues["pose_valid"][i] and cues["pose_cue"][i].max() == 0
    kept = [i for i in range(45) if cues["pose_valid"][i]]
    assert all(cues["pose_cue"][i].max() > 0 for i in kept)
    assert cues["face_valid"].sum() == report["face_frames"]
    with safe_open(str(walk_cues / "cues.safetensors"), "numpy") as f:
        assert json.loads(f.metadata()["alignment"]) == report["alignment"]
    preview = cv2.imread(str(walk_cues / "preview.png"))
    assert preview is not None and preview.shape[0] == 5 * 192


def test_arrays_only_writes_the_same_arrays_without_videos(walk_cues, tmp_path):
    """`cues --arrays-only`: cues.safetensors (the same arrays as the full job), report.json and
    config.yaml; no mp4 previews, no preview.png."""
    out = tmp_path / "arrays"
    assert main(["cues", "--quiet", "--arrays-only", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO),
                 "--out", str(out), "--size", "256"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".directanimator-output", "config.yaml", "cues.safetensors",
                                                     "report.json"]
    a, b = load_cues(out / "cues.safetensors"), load_cues(walk_cues / "cues.safetensors")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_cue_file_is_written_in_place_with_the_arrays_of_the_memory_sink(tmp_path, monkeypatch):
    """The job's second pass knows the frame count, so cues.safetensors is laid out at once and each
    frame written in place (no spool copied at the end); its arrays are those the in-memory sink
    collects from the same extraction."""
    from directanimator.config import CuesConfig
    from directanimator.cues import extract_cues_in_memory
    from directanimator.cues.files import mask_to_uint8, write_cues
    from directanimator.storage import StreamingSafetensorsWriter
    from directanimator.video import iter_frames, load_image

    calls, copies = [], []
    real = StreamingSafetensorsWriter.preallocate
    monkeypatch.setattr(StreamingSafetensorsWriter, "preallocate",
                        lambda self, count, examples: calls.append(count) or real(self, count, examples))
    import directanimator.storage as storage

    monkeypatch.setattr(storage, "append_file", lambda *a: copies.append(a))
    cfg = CuesConfig(size=128)
    report = write_cues(ASTRONAUT, WALK_VIDEO, tmp_path / "out", cfg, progress=False, videos=False)
    assert calls == [report.num_frames] and not copies
    on_disk = load_cues(tmp_path / "out" / "cues.safetensors")
    mem = extract_cues_in_memory(load_image(ASTRONAUT), list(iter_frames(WALK_VIDEO)), cfg)
    for key in ("pose_cue", "face_cue", "pose_valid", "face_valid"):
        assert np.array_equal(on_disk[key], getattr(mem, key)), key
    for key in ("body_mask", "face_mask"):
        assert np.array_equal(mask_to_uint8(on_disk[key]), mask_to_uint8(getattr(mem, key))), key


def test_face_detection_on_its_own_thread_gives_the_same_cues(walk_cues, tmp_path, monkeypatch):
    """Pass 1 detects frame i's face on a second thread while it segments frame i + 1: the arrays are
    the same as with everything on one thread, and the detector did run off the main thread."""
    import threading

    from directanimator.cues import extract
    from directanimator.cues.face import SubjectFaceFinder

    threads = []
    real_call = SubjectFaceFinder.__call__

    def spy(self, *a, **k):
        threads.append(threading.current_thread() is threading.main_thread())
        return real_call(self, *a, **k)

    monkeypatch.setattr(SubjectFaceFinder, "__call__", spy)
    args = ["cues", "--quiet", "--arrays-only", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO),
            "--size", "256", "--out"]
    assert main([*args, str(tmp_path / "two")]) == 0
    assert threads.count(False) >= 40  # the driving frames' faces (the reference's is on the main thread)
    monkeypatch.setattr(extract, "OVERLAP_FACE_DETECTION", False)
    threads.clear()
    assert main([*args, str(tmp_path / "one")]) == 0
    assert not threads.count(False)
    a, b = load_cues(tmp_path / "two" / "cues.safetensors"), load_cues(tmp_path / "one" / "cues.safetensors")
    c = load_cues(walk_cues / "cues.safetensors")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]) for k in a)


def expect_error(capsys, tmp_path, args, message):
    out = tmp_path / "out"
    code, err = run([*args, "--out", out], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists() and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_missing_files(tmp_path, capsys):
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", tmp_path / "nope.mp4"], "file not found")
    expect_error(capsys, tmp_path, ["--reference", tmp_path / "nope.jpg", "--driving", WALK_VIDEO], "file not found")


def test_empty_and_fake_videos(tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", tmp_path / "empty.mp4"], "empty (0 bytes)")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", tmp_path / "text.mp4"], "not a video or corrupt")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(WALK_VIDEO.read_bytes()[:2000])
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", corrupt], "video")


def test_undecodable_image(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    expect_error(capsys, tmp_path, ["--reference", tmp_path / "bad.png", "--driving", WALK_VIDEO], "cannot decode image")


def test_no_person_in_reference(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((128, 128, 3), 180, np.uint8))
    expect_error(capsys, tmp_path, ["--reference", tmp_path / "wall.png", "--driving", WALK_VIDEO],
                 "no person found in the reference")


def test_no_person_in_any_driving_frame(tmp_path, capsys):
    write_clip(tmp_path / "blank.mp4", [np.full((64, 64, 3), 120, np.uint8)] * 6)
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", tmp_path / "blank.mp4"],
                 "no person found in any frame")


def test_unknown_config_key(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("cues:\n  pose:\n    sigma: 3\n")
    expect_error(capsys, tmp_path, ["--reference", ASTRONAUT, "--driving", WALK_VIDEO, "--config", tmp_path / "c.yaml"],
                 "unknown config key 'cues.pose.sigma'")


def test_person_in_some_frames_and_no_face_in_reference(tmp_path, capsys, walk_frames):
    blank = np.full_like(walk_frames[0], 130)
    write_clip(tmp_path / "partial.mp4", [blank] * 5 + walk_frames[:15])
    faceless = cv2.imread(str(ASTRONAUT))
    # Her face blurred beyond recognition; the head's shape (which the segmenter needs) is kept.
    faceless[20:95, 75:140] = cv2.GaussianBlur(faceless[20:95, 75:140], (0, 0), 25)
    cv2.imwrite(str(tmp_path / "faceless.png"), faceless)
    out = tmp_path / "out"
    # the person-presence check needs a face (its detectors are face-anchored): it refuses this photo
    # and says how to skip it
    code, err = run(["--reference", tmp_path / "faceless.png", "--driving", tmp_path / "partial.mp4", "--out", out,
                     "--size", "128"], capsys)
    assert code == 2 and "min_person_confidence: 0" in err and not out.exists()
    (tmp_path / "no_check.yaml").write_text("cues:\n  segmentation:\n    min_person_confidence: 0\n")
    code, err = run(["--reference", tmp_path / "faceless.png", "--driving", tmp_path / "partial.mp4", "--out", out,
                     "--size", "128", "--config", tmp_path / "no_check.yaml"], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["num_frames"] == 20 and report["no_person_frames"][:5] == [0, 1, 2, 3, 4]
    assert report["person_frames"] >= 14 and not report["reference"]["face_found"]
    cues = load_cues(out / "cues.safetensors")
    assert cues["pose_cue"][:5].max() == 0 and not cues["pose_valid"][:5].any() and not cues["face_valid"][:5].any()


def test_odd_sizes_4k_gray_and_rgba(tmp_path, capsys, walk_frames):
    big = [cv2.resize(f, (3840, 2160)) for f in walk_frames[:3]]
    write_clip(tmp_path / "4k.mp4", big)
    odd = [cv2.resize(f, (253, 187)) for f in walk_frames[:4]]
    write_clip(tmp_path / "odd.mp4", [np.pad(f, ((0, 1), (0, 1), (0, 0))) for f in odd])  # x264 wants even
    ref = cv2.imread(str(ASTRONAUT))
    cv2.imwrite(str(tmp_path / "gray.png"), cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([ref, np.full(ref.shape[:2], 255, np.uint8)]))
    for video, reference in (("4k.mp4", "gray.png"), ("odd.mp4", "rgba.png")):
        out = tmp_path / f"out-{video}"
        code, err = run(["--reference", tmp_path / reference, "--driving", tmp_path / video, "--out", out,
                         "--size", "128"], capsys)
        assert code == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["person_frames"] >= 1 and report["letterbox"]["size"] == 128
        assert load_cues(out / "cues.safetensors")["pose_cue"].shape[1:] == (128, 128)


def test_subprocess_exit_code_and_single_line(tmp_path):
    (tmp_path / "text.mp4").write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "directanimator", "cues", "--reference", str(ASTRONAUT),
                           "--driving", str(tmp_path / "text.mp4"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["cues", "animate"])
def test_sigterm_leaves_nothing_behind(tmp_path, verb):
    """SIGTERM unwinds like Ctrl-C: exit 143, one error line, no temporary files or folders."""
    import signal
    import time

    from directanimator.synth.render import render_clip

    from ..media import write_clip

    clip = render_clip(11, 12, 13, 240, 128)
    drv = tmp_path / "in" / "long.mp4"
    drv.parent.mkdir()
    write_clip(drv, list(clip.frames), fps=15)
    ref = tmp_path / "in" / "ref.png"
    from directanimator.video import save_image

    save_image(ref, render_clip(14, 12, 13, 1, 128).frames[0])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("cues" if verb == "cues" else "a.mp4")
    cmd = [str(Path(sys.executable).parent / "directanimator"), verb, "--reference", str(ref), "--driving", str(drv),
           "--out", str(out)] + (["--size", "256"] if verb == "cues" else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(out_dir.iterdir()):
        time.sleep(0.05)  # wait until it has started writing
    assert any(out_dir.iterdir()), "the job never started writing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip() == "error: terminated (SIGTERM); nothing was written"
    assert list(out_dir.iterdir()) == []


def test_outputs_checked_before_compute_and_overwrite_only_replaces_our_own_folders(tmp_path, capsys):
    """--overwrite replaces a folder this tool wrote (its marker file), never an unrelated one;
    evaluate --out on a folder, or anywhere unwritable, fails at once with one line."""
    from directanimator.storage import MARKER

    clip = tmp_path / "d.mp4"
    write_clip(clip, [np.full((64, 64, 3), v, np.uint8) for v in (60, 70, 80)], fps=10)
    mine = tmp_path / "mine"
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(mine),
                 "--size", "64"]) == 0
    assert (mine / MARKER).is_file()
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(mine),
                 "--size", "64", "--overwrite"]) == 0
    theirs = tmp_path / "theirs"
    (theirs / "photos").mkdir(parents=True)
    (theirs / "thesis.tex").write_text("do not delete")
    capsys.readouterr()
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(theirs),
                 "--size", "64", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "replaces only a folder this tool wrote" in err and len(err.strip().splitlines()) == 1
    assert (theirs / "thesis.tex").read_text() == "do not delete" and (theirs / "photos").is_dir()
    for out, says in ((tmp_path, "is a folder"), (Path("/sys/directanimator-test/report.json"), "cannot write to")):
        assert main(["evaluate", "--generated", str(clip), "--ground-truth", str(clip), "--out", str(out),
                     "--no-face", "--no-pose", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert says in err and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.partial"))


def test_written_config_round_trips_and_bad_values_are_one_line(tmp_path, capsys):
    """The config.yaml that `cues` writes is a valid --config (nested under `cues:`); negative or
    out-of-range cue settings are refused with one line before any work."""
    out = tmp_path / "a"
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(out),
                 "--size", "64"]) == 0
    again = tmp_path / "b"
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(again),
                 "--config", str(out / "config.yaml")]) == 0
    assert json.loads((again / "report.json").read_text())["config"] == json.loads((out / "report.json").read_text())["config"]
    capsys.readouterr()
    for key, value in (("face:\n    margin", -0.5), ("quality:\n    threshold", 2.0), ("location:\n    grid_cell", 0),
                       ("segmentation:\n    roi_expand", -1.0)):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"cues:\n  {key}: {value}\n")
        assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out",
                     str(tmp_path / "c"), "--config", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: config key 'cues.") and "must lie between" in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


def test_a_truncated_video_is_reported(tmp_path, capsys):
    """An mp4 with its index at the front, cut in half: the frames that can be read are used, and
    the report and a warning line say how many the container announced."""
    import av

    from directanimator.synth.render import render_clip

    clip = render_clip(21, 22, 23, 40, 128)
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 128, 128, "yuv420p"
        for f in clip.frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    half = tmp_path / "half.mp4"
    data = full.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / "cues"
    code = main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(half), "--out", str(out),
                 "--size", "128"])
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["container_frames"] == 40 and report["num_frames"] < 40
    assert f"announces 40 frames but only {report['num_frames']} could be read" in err


@pytest.mark.parametrize("photo, person", [("coffee.jpg", False), ("cat.jpg", False), ("rocket.jpg", False),
                                           ("grace_hopper.jpg", True), (None, True)])
@pytest.mark.parametrize("size", [64, 512])
def test_a_reference_without_a_person_is_refused_at_every_size(tmp_path, capsys, photo, person, size):
    """A cup, a cat or a launch scene as the reference: exit 2 with one line (they used to pass at
    512 px, a rock or a speck becoming "the person"), the same at 64 px; people pass at both."""
    from directanimator.cues.presence import person_confidence
    from directanimator.video import load_image

    path = ASTRONAUT if photo is None else ROOT / "tests" / "data" / photo
    confidence = person_confidence(load_image(path))
    assert (confidence >= 0.8) if person else (confidence < 0.2), confidence
    # the job asks only whether it reaches the threshold: the pose model is skipped once a face does
    import mediapipe as mp

    poses = []
    real_pose = mp.solutions.pose.Pose

    class SpyPose(real_pose):
        def __init__(self, *a, **k):
            poses.append(1)
            super().__init__(*a, **k)

    mp.solutions.pose.Pose = SpyPose
    try:
        quick = person_confidence(load_image(path), enough=0.5)
    finally:
        mp.solutions.pose.Pose = real_pose
    assert (quick >= 0.5) == (confidence >= 0.5) and quick <= confidence
    assert len(poses) == (0 if person else 1)  # the people's faces score 0.87-0.90 here
    code = main(["cues", "--quiet", "--reference", str(path), "--driving", str(WALK_VIDEO), "--out",
                 str(tmp_path / "c"), "--size", str(size)])
    err = capsys.readouterr().err
    if person:
        assert code == 0, err
    else:
        assert code == 2 and err.startswith("error: no person found in the reference image")
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


def test_native_logs_after_an_interrupted_quiet_block_do_not_reach_stderr():
    """MediaPipe's graph threads may log after a Ctrl-C / SIGTERM left a quiet block: fd 2 stays
    silenced, and the CLI's one error line still reaches the terminal's stderr."""
    code = """
import os, threading, time
from directanimator.cues._native import error_line, quiet_native_stderr
late = threading.Thread(target=lambda: (time.sleep(0.3), os.write(2, b"W0000 native log line\\\\n")))
try:
    with quiet_native_stderr():
        late.start()
        raise KeyboardInterrupt
except KeyboardInterrupt:
    error_line("error: interrupted; nothing was written")
late.join()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "error: interrupted; nothing was written\n", r.stderr


def test_detectors_object_from_annotations():
    """One object carries the given detectors: built from a clip's annotations
    (dict or rendered clip), the first N frames when asked, the reference's mask and face box, and only
    the fields that are set as keyword arguments."""
    from directanimator.cues.detectors import Detectors
    from directanimator.synth.render import render_clip

    drv, ref = render_clip(901, 801, 701, 6, 64), render_clip(902, 802, 702, 1, 64)
    d = Detectors.from_annotations(drv, ref, frames=4, skeleton_errors=False)
    assert set(d.kwargs()) == {"segmenter", "face_detector", "keypoints", "reference_mask"}
    rgb = np.zeros((64, 64, 3), np.uint8)
    assert np.array_equal(d.segmenter.segment(rgb, 3), drv.masks[3].astype(np.float32) / (255.0 if drv.masks.max() > 1 else 1.0))
    assert len(d.keypoints.keypoints) == 4 and np.array_equal(d.keypoints.keypoints, drv.keypoints[:4].astype(np.float32))
    assert np.array_equal(d.reference_mask, ref.masks[0])
    only = Detectors.from_annotations({"masks": drv.masks, "face_boxes": drv.face_boxes})
    assert set(only.kwargs()) == {"segmenter", "face_detector"} and Detectors().kwargs() == {}


def test_cpu_budget_benchmark_counts_each_threads_cpu_in_its_group(tmp_path):
    """benchmarks/cue_threads.py: a thread's CPU time read from /proc is the time the thread measures
    itself (within two clock ticks), and a sleeping thread's is none; on a real job every group the
    script names is found among the job's own threads by name (so a renamed thread does not fall into
    "other" unseen), and the threads together account for the job's CPU time (getrusage) within each
    thread's tick rounding and the sampling's loss. Nothing here depends on how fast the machine is or
    how the scheduler shares it."""
    import threading
    import time

    from directanimator.config import CuesConfig

    from ..scripts import load_benchmark

    cue_threads = load_benchmark("cue_threads")

    stop, spun = threading.Event(), threading.Event()
    own = []

    def spin():
        while time.thread_time() < 0.2:
            pass
        own.append(time.thread_time())
        spun.set()
        stop.wait()

    spinner = threading.Thread(target=spin, name="spin")
    sleeper = threading.Thread(target=stop.wait, name="sleep")
    spinner.start(), sleeper.start()
    spun.wait()
    after = cue_threads.thread_cpu()
    stop.set(), spinner.join(), sleeper.join()
    tick = 1 / cue_threads.TICK
    assert own[0] - 2 * tick <= after[spinner.native_id][1] <= time.process_time(), (own, after[spinner.native_id])
    assert after[sleeper.native_id][1] <= 2 * tick, after[sleeper.native_id]

    clip = tmp_path / "clip.mp4"
    cue_threads.make_clip(clip, 1, size=128)
    job = cue_threads.measured_job(clip, tmp_path / "out", CuesConfig(size=128))
    assert {"main thread", "MediaPipe graphs", "decoding (FFmpeg, prefetch)", "face-detection worker",
            "cue writer"} <= set(job["threads"]), job["threads"]
    accounted = sum(job["groups"].values()) + job["sampling_ms_per_frame"]
    rounding = 1000 * tick * (sum(job["threads"].values()) + 1) / job["frames"]  # each reading < 1 tick low
    assert abs(accounted - job["cpu_ms_per_frame"]) <= rounding + 0.1 * job["cpu_ms_per_frame"], job


def test_warnings_are_one_line_each_and_a_field_of_the_report():
    """cue_warnings: the person found in under 90% of the frames, a scale beyond 2 (or under 1/2), a
    Location Cue mostly outside the frame in a tenth of the frames or more, a variable frame rate and a
    truncated file each give one line; a clean job none."""
    from directanimator.cues.extract import CueReport, cue_warnings, mostly_outside
    from directanimator.cues.location import Alignment

    def report(**kw):
        base = dict(num_frames=100, fps=30.0, size=64, person_frames=100, face_frames=100, dropped_frames=[],
                    no_person_frames=[], no_face_frames=[], alignment={"scale": 1.2, "frames_mostly_outside": 0},
                    reference={}, letterbox={}, quality_scores=[], ms_per_frame={}, models={})
        return CueReport(**{**base, **kw})

    assert cue_warnings(report()) == []
    assert cue_warnings(report(alignment={"scale": 1.2, "frames_mostly_outside": 9})) == []  # under a tenth
    lines = cue_warnings(report(person_frames=80, alignment={"scale": 2.4, "frames_mostly_outside": 12},
                                container_frames=120), variable_frame_rate=True)
    assert [x.split(":")[0] for x in lines] == ["warning"] * 5 and all("\n" not in x for x in lines)
    assert "only 80 of 100 frames (80%)" in lines[1] and "scaled by 2.40" in lines[2] and "in 12 of 100" in lines[3]
    assert "variable frame rate" in lines[4] and "announces 120 frames" in lines[0]
    assert "scaled by 0.40" in cue_warnings(report(alignment={"scale": 0.4}))[0]
    boxes = [np.array([10.0, 30, 10, 50]), np.array([50.0, 70, 10, 50]), None]  # [x_min, x_max, y_min, y_max]
    shift = Alignment(1.0, (0.0, 0.0))
    assert mostly_outside(boxes, np.array([True, True, True]), shift, 64) == 1  # 70 - 64 = 30% outside
    assert mostly_outside(boxes, np.array([True, False, True]), shift, 64) == 0  # not a valid frame
    assert mostly_outside(boxes, np.array([True, True, True]), Alignment(1.0, (-20.0, 0.0)), 64) == 1


def test_a_clip_where_the_person_is_mostly_missing_warns_on_the_terminal_and_in_the_report(tmp_path, capsys):
    frames = list(iter_frames(WALK_VIDEO))
    frames = frames[:20] + [np.full_like(frames[0], 90)] * 25  # the person leaves after 20 of 45 frames
    clip = tmp_path / "leaves.mp4"
    write_clip(clip, frames, fps=30)
    code = main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(clip), "--out",
                 str(tmp_path / "c"), "--size", "128", "--arrays-only"])
    err = capsys.readouterr().err.strip().splitlines()
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert code == 0 and report["person_frames"] <= 21
    assert err == report["warnings"] and len(err) == 1 and err[0].startswith(
        f"warning: a person was found in only {report['person_frames']} of 45 frames")


def test_preview_spreads_over_a_clip_whose_container_gave_no_frame_count_and_draws_location_on_the_reference(
        tmp_path):
    """A WebM's container does not say how many frames it holds (hint 0): the preview still shows
    frames spread over the whole clip once the count is known (it showed frame 0 only); the Location
    Cue is drawn over the reference photo, which shows through where the cue is empty."""
    from directanimator.cues.extract import CueReport
    from directanimator.cues.files import PREVIEW_POINTS, CueFileSink

    ref = np.full((32, 32, 3), 200, np.uint8)
    sink = CueFileSink(tmp_path, 32, 10, 0, ref, np.zeros((32, 32), bool))
    sink.begin(20)
    body = np.zeros((32, 32), np.float32)
    body[8:24, 10:20] = 1.0
    for i in range(20):
        rgb = np.full((32, 32, 3), i, np.uint8)
        sink.add(i, rgb, np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.uint8), body, body * 0, True, False)
    shown = [int(c[0][0, 0, 0]) for c in sink._preview]
    assert shown == [0, 6, 13, 19] and len(shown) == PREVIEW_POINTS
    location = sink._preview[0][3]
    assert (location[0, 0] == ref[0, 0]).all()  # the reference where the cue is empty
    assert location[12, 12, 0] > ref[12, 12, 0] and location[12, 12, 1] < ref[12, 12, 1]  # red over the body
    report = CueReport(num_frames=20, fps=10.0, size=32, person_frames=20, face_frames=0, dropped_frames=[],
                       no_person_frames=[], no_face_frames=[], alignment={}, reference={}, letterbox={},
                       quality_scores=[], ms_per_frame={}, models={})
    sink.close(report)
    assert (tmp_path / "preview.png").is_file()


def test_a_subject_point_on_nobody_is_refused_not_followed(tmp_path, walk_frames):
    """A segmenter may return a blob of floor: a point on it picks that blob (first in frame 1), which
    the person detectors do not take for a person: one error naming the point and the frame, instead of
    cues of the floor. A point on the dancer still works (test_subject_choice_for_the_driving_video_and_the_reference)."""
    from directanimator.config import CuesConfig
    from directanimator.cues.extract import extract_cues_in_memory
    from directanimator.errors import InputError

    class FloorAndDancer:
        """The dancer's true place (the left 256 columns) and a strip of 'floor' at the bottom right."""
        name, supports_roi, given = "floor-and-dancer", False, False

        def segment(self, rgb, index):
            prob = np.zeros(rgb.shape[:2], np.float32)
            h, w = prob.shape
            if index > 0:  # nothing in the first frame: the point first picks something in frame 1
                prob[int(0.62 * h):int(0.74 * h), w // 2 + 8:] = 1.0  # the frame's bottom (letterboxed)
            return prob

    frames = [np.concatenate([f, np.full_like(f, 110)], axis=1) for f in walk_frames[:4]]
    cfg = CuesConfig(size=64)
    cfg.segmentation.subject = "480,240"  # on the floor strip, in source pixels (512 x 256)
    cfg.segmentation.seed_with_pose = False
    with pytest.raises(InputError, match=r"--subject 480,240: what that point picks in frame 1 is not a person"):
        extract_cues_in_memory(walk_frames[0], frames, cfg, segmenter=FloorAndDancer())


def test_a_termination_that_lands_in_a_finalizer_is_not_lost():
    """SIGTERM arriving while Python runs some library object's `__del__` raises there, where Python
    prints "Exception ignored" and drops it, and the job would go on to write its output: the CLI's
    handling sends it again, to be raised where it unwinds the job."""
    code = """
import os, signal, time
from directanimator.cli import Terminated, install_termination_handling
install_termination_handling()
class Collected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the signal lands while the finalizer runs
        for _ in range(1000):
            pass
try:
    Collected()
    for _ in range(200):
        time.sleep(0.01)
    print("not terminated")
except Terminated:
    print("terminated")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "terminated" and r.stderr == "", (r.stdout, r.stderr)
