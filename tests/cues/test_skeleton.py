"""Skeleton maps (pose-cue mode `skeleton`, cues/skeleton.py): drawing, the MediaPipe mapping, the
detector errors, and the mode end to end (aligned like the Location Cue; real clips via MediaPipe)."""

from __future__ import annotations

import numpy as np
import pytest

from directanimator.cues.skeleton import (COCO_LIMBS, COCO_NAMES, COLOURS, MEDIAPIPE_TO_COCO, GivenKeypoints,
                                          corrupt_keypoints, draw_skeleton)


def t_pose(cx=32.0, top=10.0):
    k = np.zeros((17, 3), np.float32)
    xy = {0: (0, 0), 1: (-2, -2), 2: (2, -2), 3: (-4, -1), 4: (4, -1), 5: (-8, 8), 6: (8, 8), 7: (-16, 8), 8: (16, 8),
          9: (-24, 8), 10: (24, 8), 11: (-5, 24), 12: (5, 24), 13: (-5, 36), 14: (5, 36), 15: (-5, 48), 16: (5, 48)}
    for i, (x, y) in xy.items():
        k[i] = (cx + x, top + y, 2)
    return k


def test_limbs_are_drawn_in_their_colours_and_hidden_joints_are_not():
    k = t_pose()
    img = draw_skeleton(k, 64, thickness=3)
    shoulders = COLOURS[COCO_LIMBS.index((5, 6))]
    assert tuple(img[18, 32]) == shoulders  # the middle of the shoulder line
    left_shin = COLOURS[COCO_LIMBS.index((15, 13))]
    assert tuple(img[52, 27]) == left_shin
    assert img[0:5].max() == 0 and img[:, 60:].max() == 0  # nothing outside the figure
    k[15, 2] = 0  # left ankle not found: no shin
    assert tuple(draw_skeleton(k, 64, thickness=3)[52, 27]) == (0, 0, 0)
    assert draw_skeleton(np.zeros((17, 3), np.float32), 64).max() == 0


def test_mediapipe_landmarks_map_to_the_same_coco_points():
    mp = pytest.importorskip("mediapipe")
    names = [mp.solutions.pose.PoseLandmark(i).name.lower() for i in MEDIAPIPE_TO_COCO]
    assert names == list(COCO_NAMES)


def test_detector_errors_swap_left_right_facing_away_and_touch_only_occluded_points_otherwise():
    front = t_pose()
    back = t_pose()
    back[0, 2] = 1  # the nose hidden: facing away
    back[9, 2] = 1  # a wrist behind the body
    seq = np.stack([front, back])
    out = corrupt_keypoints(seq, np.random.default_rng(0), drop=0.0, misplace=0.2)
    assert np.array_equal(out[0], front)  # a front view with every point visible stays exact
    assert np.allclose(out[1, 5, :2], back[6, :2]) and np.allclose(out[1, 6, :2], back[5, :2])  # swapped
    # the occluded wrist (9) takes wrist 10's place and is then misplaced; the visible wrist 10 takes
    # wrist 9's place exactly
    assert out[1, 9, 2] == back[9, 2] and 0 < np.linalg.norm(out[1, 9, :2] - back[10, :2]) <= 0.2 * 48 * 1.5
    assert np.allclose(out[1, 10, :2], back[9, :2]) and out[1, 10, 2] == 2
    dropped = corrupt_keypoints(seq, np.random.default_rng(0), drop=1.0)
    assert dropped[1, 9, 2] == 0 and dropped[1, 0, 2] == 0 and dropped[0, 9, 2] == 2


def test_skeleton_mode_draws_the_driving_pose_on_the_reference_person():
    """A small driving puppet far from a large reference puppet: the skeleton lands over the
    reference person (the Location Cue's alignment), its extent scaled like the Location Cue."""
    from directanimator.config import CuesConfig
    from directanimator.cues import extract_cues_in_memory
    from directanimator.cues.location import tight_box
    from directanimator.cues.segment import GivenMasks
    from directanimator.synth.render import render_clip
    from directanimator.synth.scene import Scene

    size = 128
    driving = render_clip(1, 0, Scene(1, "solid", (20, 20, 20), (0, 0, 0), 0.45, 0.3, 0.9), 9, size)
    reference = render_clip(3, 0, Scene(2, "solid", (90, 90, 90), (0, 0, 0), 0.8, 0.65, 0.95), 1, size)
    cfg = CuesConfig(size=size)
    cfg.pose.mode = "skeleton"
    cfg.location.mode, cfg.location.grid_cell = "hard", 1  # the exact aligned silhouette to compare with
    cues = extract_cues_in_memory(reference.frames[0], list(driving.frames), cfg, segmenter=GivenMasks(driving.masks),
                                  reference_mask=reference.masks[0].astype(np.uint8),
                                  keypoints=GivenKeypoints(driving.keypoints))
    assert cues.pose_cue.shape == (9, size, size, 3)
    assert cues.report.models["skeleton_frames"] == int(cues.pose_valid.sum()) >= 7
    for t in np.nonzero(cues.pose_valid)[0]:
        drawn = cues.pose_cue[t].max(axis=-1) > 0
        body = cues.body_mask[t] > 0.5
        ys, xs = np.nonzero(drawn)
        bx0, bx1, by0, by1 = tight_box(body)
        # the stick figure sits inside the aligned body (a little slack for line width)
        assert xs.min() >= bx0 - 3 and xs.max() <= bx1 + 3 and ys.min() >= by0 - 3 and ys.max() <= by1 + 3
        assert (drawn & ~body).sum() < 0.2 * drawn.sum()
        # ... and nowhere near the small driving puppet's own place
        assert not (drawn & (driving.masks[t] > 0) & ~body).any()
    assert cues.face_cue.shape == (9, size, size, 3)  # face and location cues are still made (an arm may drop them)


@pytest.mark.slow
def test_skeleton_cues_on_the_real_clip_through_the_cli(tmp_path):
    """`directanimator cues` with pose.mode skeleton on the bundled real clip: MediaPipe Pose finds
    the body, and the pose cue video is a coloured stick figure."""
    import json

    from directanimator.assets import ASTRONAUT, WALK_VIDEO
    from directanimator.cli import main
    from directanimator.cues.files import load_cues

    cfg = tmp_path / "skeleton.yaml"
    cfg.write_text("cues:\n  size: 256\n  pose:\n    mode: skeleton\n")
    out = tmp_path / "cues"
    assert main(["cues", "--quiet", "--reference", str(ASTRONAUT), "--driving", str(WALK_VIDEO), "--out", str(out),
                 "--config", str(cfg)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["keypoints"] == "MediaPipe Pose -> COCO-17"
    assert report["models"]["skeleton_frames"] >= 0.8 * report["num_frames"]
    pose = load_cues(out / "cues.safetensors")["pose_cue"]
    assert pose.ndim == 4 and pose.shape[-1] == 3
    coloured = pose.max(axis=-1).astype(int) - pose.min(axis=-1)
    assert (coloured > 100).sum() > 50 * report["models"]["skeleton_frames"]  # saturated limb colours, not gray
