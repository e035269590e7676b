"""The pieces of experiments/error_study.py on hand-made examples."""

from __future__ import annotations

import numpy as np

from ..scripts import load_experiment


def test_part_masks_follow_the_keypoints_inside_the_person():
    es = load_experiment("error_study")
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 2] = 1
    kp[0, 5, :2], kp[0, 7, :2] = (10, 10), (10, 30)  # left upper arm: a vertical segment at x = 10
    kp[0, 6, :2], kp[0, 8, :2] = (50, 10), (50, 30)  # right upper arm at x = 50
    person = np.zeros((1, 64, 64), bool)
    person[0, :, :32] = True  # only the left half is the person
    masks = es.part_masks(kp, person)
    arms = masks["upper arms"][0]
    assert arms[20, 10] and arms[20, 12] and not arms[20, 13]  # within 2 px of the segment
    assert not arms[20, 50]  # near the right arm's segment but outside the person
    assert not arms[35, 10]  # past the segment's end
    kp[0, 7, 2] = 0  # an unseen joint: its segment is left out
    assert not es.part_masks(kp, person)["upper arms"].any()


def test_colour_reached_is_one_for_the_truth_and_zero_for_the_photo():
    es = load_experiment("error_study")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    region = np.zeros((3, 8, 8), bool)
    region[:, 2:6, 2:6] = True
    assert es.colour_reached(truth, truth, reference, region) == (48, 48)
    still = np.repeat(reference[None], 3, 0)
    assert es.colour_reached(still, truth, reference, region)[0] == 0
    half = still.copy()
    half[:, 2:4, 2:6] = truth[:, 2:4, 2:6]
    assert es.colour_reached(half, truth, reference, region) == (24, 48)


def test_pooled_psnr_over_regions():
    es = load_experiment("error_study")
    pool = es.Pool()
    truth = np.zeros((1, 4, 4, 3), np.uint8)
    video = truth.copy()
    video[0, 0, 0] = 255  # one pixel wrong by 255 in every channel
    region = np.zeros((1, 4, 4), bool)
    region[0, 0, :2] = True  # two pixels: mse = 255^2 / 2
    pool.add("a", "m", video, truth, region)
    assert abs(pool.psnr("a", "m") - 10 * np.log10(2)) < 1e-9
    assert pool.psnr("a", "other") is None
