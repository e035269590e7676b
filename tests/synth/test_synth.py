import json

import cv2
import numpy as np
import pytest

from directanimator.cli import main
from directanimator.data.format import read_annotations, read_manifest
from directanimator.synth import COCO17, MOTION_FAMILIES, Motion, render_clip
from directanimator.synth.pseudo import Degradation, render_pseudo
from directanimator.synth.scene import Scene
from directanimator.video import iter_frames

LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16)]


def test_coco17_and_families():
    assert len(COCO17) == 17 and COCO17[0] == "nose" and COCO17[16] == "right_ankle"
    assert {Motion.from_id(i).family for i in range(5)} == set(MOTION_FAMILIES)


@pytest.mark.parametrize("motion", range(5))
def test_ground_truth_matches_the_pixels(motion):
    clip = render_clip(7, motion, 11, 12, 128)
    bg = Scene.from_id(11).render_background(128)
    for t in range(12):
        frame, mask = clip.frames[t], clip.masks[t]
        diff = np.abs(frame.astype(int) - bg).max(axis=2)
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        # Nothing drawn outside the mask beyond 1 px of anti-aliasing (faint tails <= 8/255 excepted).
        assert not ((diff > 8) & ~grown).any()
        assert (diff[mask] > 0).mean() > 0.9         # and the mask is what was drawn
        kp = clip.keypoints[t]
        for x, y, v in kp:
            if v == 2:
                xi, yi = int(x), int(y)
                assert grown[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2].any()
        box, lm = clip.face_boxes[t], clip.face_landmarks[t]
        if not np.isnan(lm).any():
            assert not np.isnan(box).any()
            assert (lm[:, 0] >= box[0] - 0.5).all() and (lm[:, 0] <= box[2] + 0.5).all()
            assert (lm[:, 1] >= box[1] - 0.5).all() and (lm[:, 1] <= box[3] + 0.5).all()


def test_turning_shows_the_back():
    turn = next(i for i in range(5) if Motion.from_id(i).family == "turn")
    clip = render_clip(3, turn, 4, 40, 96, fps=10)
    faces = ~np.isnan(clip.face_boxes[:, 0])
    assert faces.any() and (~faces).any()  # front and back views both occur
    back = np.nonzero(~faces)[0]
    assert (clip.keypoints[back, 0, 2] == 1).all()  # the nose is occluded in back view


def unit_limbs(kp):
    v = np.stack([kp[b, :2] - kp[a, :2] for a, b in LIMBS])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_one_motion_two_identities_agree_up_to_proportions():
    a, b = render_clip(1, 2, 5, 10, 128), render_clip(2, 2, 6, 10, 128)
    for t in range(10):
        assert np.allclose(unit_limbs(a.keypoints[t]), unit_limbs(b.keypoints[t]), atol=2e-3)
    assert not np.allclose(a.keypoints[:, :, :2], b.keypoints[:, :, :2], atol=2.0)  # placed and sized differently


def test_any_size_and_bounds():
    for size in (64, 200, 512):
        c = render_clip(0, 0, 0, 1, size)
        assert c.frames.shape == (1, size, size, 3) and c.masks.any()
    with pytest.raises(ValueError):
        render_clip(0, 0, 0, 1, 32)


def test_pseudo_degradations():
    exact = render_pseudo(1, 3, 2, 9, 6, 96, 15.0)
    same = render_clip(2, 3, 9, 6, 96)
    assert np.array_equal(exact.frames, same.frames)
    diffs = []
    for strength in (0.3, 1.0):
        d = render_pseudo(1, 3, 2, 9, 6, 96, 15.0, Degradation(blur=strength, colour_drift=strength))
        diffs.append(np.abs(d.frames.astype(int) - same.frames).mean())
    assert 0 < diffs[0] < diffs[1]
    source = render_clip(1, 3, 9, 6, 96)
    leak = render_pseudo(1, 3, 2, 9, 6, 96, 15.0, Degradation(identity_leak=1.0))
    m = same.masks & source.masks
    assert np.abs(leak.frames[m].astype(int) - source.frames[m]).mean() < np.abs(same.frames[m].astype(int) - source.frames[m]).mean()
    jit = render_pseudo(1, 3, 2, 9, 6, 96, 15.0, Degradation(pose_jitter=1.0))
    assert not np.allclose(jit.keypoints, same.keypoints)


def test_synth_cli_is_deterministic_and_holds_out(tmp_path):
    args = ["synth", "--quiet", "--identities", "5", "--motions", "5", "--clips", "5", "--frames", "5", "--size", "64",
            "--seed", "1", "--preview"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    root = tmp_path / "a"
    records = read_manifest(root)
    world = json.loads((root / "world.json").read_text())
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    assert all(r.identity_id in world["identities"]["train"] and r.motion_id in world["motions"]["train"] for r in train)
    assert all(r.identity_id in world["identities"]["test"] or r.role == "driving" for r in test)
    assert all(r.motion_id in world["motions"]["test"] for r in test)
    by_id = {r.clip_id: r for r in records}
    for line in (root / "cross_id_pairs.jsonl").read_text().splitlines():
        p = json.loads(line)
        ref, drv, gt = by_id[p["reference"]], by_id[p["driving"]], by_id[p["ground_truth"]]
        assert gt.identity_id == ref.identity_id != drv.identity_id
        assert gt.motion_id == drv.motion_id and gt.scene_id == ref.scene_id
    clip = train[0]
    ann = read_annotations(root, clip.clip_id)
    assert ann["masks"].shape == (5, 64, 64) and ann["keypoints"].shape == (5, 17, 3)
    assert ann["face_landmarks"].shape == (5, 68, 2) and ann["face_boxes"].shape == (5, 4)
    # each training clip stores a reference photo of its person in its scene, in another motion's pose
    refs = [read_annotations(root, r.clip_id) for r in train]
    assert all(a["reference_frame"].shape == (64, 64, 3) and a["reference_mask"].shape == (64, 64) for a in refs)
    assert all(a["reference_face_box"].shape == (4,) and a["reference_keypoints"].shape == (17, 3) for a in refs)
    assert sum(not np.array_equal(a["reference_mask"], a["masks"][0]) for a in refs) >= len(refs) - 1
    assert "reference_frame" not in read_annotations(root, test[0].clip_id)  # test triples have their own
    assert main([*args, "--out", str(tmp_path / "c"), "--reference-pose", "own_frame"]) == 0
    assert "reference_frame" not in read_annotations(tmp_path / "c", train[0].clip_id)
    frames = list(iter_frames(root / "clips" / clip.clip_id / "video.mp4"))
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
    sheet = cv2.imread(str(root / "contact_sheet.png"))
    assert sheet.shape[:2] == (5 * 96, 5 * 96)


def test_synth_rejects_bad_arguments(tmp_path, capsys):
    assert main(["synth", "--quiet", "--out", str(tmp_path / "x"), "--identities", "1"]) == 2
    assert "at least 2 identities" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
