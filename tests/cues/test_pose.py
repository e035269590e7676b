import cv2
import numpy as np
import pytest
from scipy import ndimage

from directanimator.cues.pose import GaussianLowpass, pose_cue


def test_frequency_filter_equals_spatial_gaussian():
    rng = np.random.default_rng(0)
    img = (rng.random((128, 160)) * 255).astype(np.float32)
    lp = GaussianLowpass(0.05)
    out = lp(img)
    # With wrap-around borders the two are the same operator everywhere (up to the 4-sigma kernel
    # truncation of the spatial one).
    ref_wrap = ndimage.gaussian_filter(img.astype(np.float64), lp.sigma, mode="wrap", truncate=6.0)
    assert np.abs(out - ref_wrap).max() < 0.05
    # OpenCV's blur (reflecting borders) agrees away from a 4-sigma border.
    ref_cv = cv2.GaussianBlur(img, (0, 0), lp.sigma)
    b = int(np.ceil(4 * lp.sigma))
    assert np.abs(out[b:-b, b:-b] - ref_cv[b:-b, b:-b]).max() < 0.5


def test_removes_energy_above_the_cutoff():
    n = 256
    x = np.arange(n)
    lp = GaussianLowpass(0.03)
    low = np.sin(2 * np.pi * 0.01 * x)[None, :].repeat(n, 0).astype(np.float32)   # below cutoff
    high = np.sin(2 * np.pi * 0.125 * x)[None, :].repeat(n, 0).astype(np.float32)  # 4x the cutoff
    assert np.abs(lp(high)).max() < 1e-3  # exp(-0.5 * 4^2) = 3e-4
    gain_low = np.abs(lp(low)).max()
    assert gain_low == pytest.approx(np.exp(-0.5 * (0.01 / 0.03) ** 2), rel=0.02)
    # Spectral energy above 2x the cutoff drops by at least 99% on noise.
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((n, n)).astype(np.float32)
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2)
    e_in = (np.abs(np.fft.fft2(noise))[f > 0.06] ** 2).sum()
    e_out = (np.abs(np.fft.fft2(lp(noise)))[f > 0.06] ** 2).sum()
    assert e_out < 0.01 * e_in


def test_pose_modes():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:24, 8:24] = [200, 100, 50]
    rgb[0:4, 0:4] = 255  # background, outside the mask
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    gray = pose_cue(rgb, mask, "gray", None)
    assert gray.shape == (32, 32) and gray[0, 0] == 0
    assert gray[16, 16] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    rgb_cue = pose_cue(rgb, mask, "rgb", None)
    assert rgb_cue.shape == (32, 32, 3) and rgb_cue[0, 0].sum() == 0 and (rgb_cue[16, 16] == [200, 100, 50]).all()
    smooth = pose_cue(rgb, mask, "gray_lowpass", GaussianLowpass(0.05))
    assert smooth[16, 16] <= gray[16, 16] and smooth[7, 16] > 0  # edge blurred outwards
    with pytest.raises(ValueError):
        pose_cue(rgb, mask, "sepia", None)


def test_pose_cue_blur_is_relative_to_the_frame():
    """The same puppet at 64 and 256 px: the 256 px Pose Cue shrunk to 64 px matches the 64 px one,
    because the cutoff is in cycles per frame (at 64 px an absolute 4 px sigma would blur 6% of the
    frame). Also checks the cutoff's conversion itself."""
    from directanimator.config import CuesConfig
    from directanimator.cues import extract_cues_in_memory
    from directanimator.cues.segment import GivenMasks
    from directanimator.synth import render_clip

    cues = {}
    for size in (64, 256):
        clip = render_clip(2, 3, 4, 5, size)
        cfg = CuesConfig(size=size)
        cues[size] = extract_cues_in_memory(clip.frames[0], list(clip.frames), cfg, segmenter=GivenMasks(clip.masks),
                                            reference_mask=clip.masks[0].astype(np.uint8)).pose_cue.astype(np.float32)
        assert GaussianLowpass(cfg.pose.cutoff_cycles / size).sigma == pytest.approx(size / (2 * np.pi * 20.48))
    small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in cues[256]])
    err = np.abs(small - cues[64]).mean()
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 4.0) for f in cues[64]])  # what an absolute 4 px sigma gives
    assert err < 0.5 * np.abs(small - blurred).mean()
    assert err < 6.0


def test_fast_length_is_the_next_5_smooth_number():
    from directanimator.cues.pose import _fast_length

    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 700):
        assert _fast_length(n) == next(m for m in range(n, 2 * n + 2) if smooth(m))


@pytest.mark.parametrize("box", [(40, 90, 30, 100),     # inside the frame
                                 (0, 30, 100, 160),     # touches the left border: columns wrap
                                 (170, 200, 0, 20),     # top-right corner: rows and columns wrap
                                 (60, 120, 130, 160),   # bottom border
                                 (0, 200, 10, 60),      # every column: the whole axis
                                 (0, 200, 0, 160)])     # the whole frame
def test_filter_on_the_subjects_window_equals_the_whole_frame_filter(box):
    """The Pose Cue is zero outside the subject, so the low-pass runs on a window around its box;
    the result must be the whole frame's filter, wrap-around across the borders included."""
    rng = np.random.default_rng(sum(box))
    h, w = 160, 200
    lp = GaussianLowpass(0.08)  # sigma 2 px: a window of the box plus 12 px each side
    x0, x1, y0, y1 = box
    image = np.zeros((h, w), np.float32)
    image[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) * 255
    whole = lp(image)
    window = lp.on_support(image[y0:y1, x0:x1], box, (h, w))
    assert window.shape == (h, w) and window.dtype == np.float32
    assert np.abs(window - whole).max() < 1e-3
    assert np.abs(whole[whole > 1]).sum() > 0  # not trivially zero


def test_pose_cue_on_the_window_matches_the_whole_frame_cue():
    """Real silhouettes, near a border and in a corner: the same cue as filtering the whole frame
    (a pixel may round the other way: one level at most)."""
    rng = np.random.default_rng(3)
    rgb = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:256, :256]
    lp = GaussianLowpass(20.48 / 256)
    for cx, cy, r in [(128, 128, 60), (20, 200, 40), (240, 10, 30), (128, 250, 50), (5, 5, 4)]:
        mask = (xx - cx) ** 2 + ((yy - cy) / 2) ** 2 < r**2
        gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * mask
        expected = np.clip(lp(gray) + 0.5, 0, 255).astype(np.uint8)
        got = pose_cue(rgb, mask, "gray_lowpass", lp)
        diff = np.abs(got.astype(int) - expected)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not pose_cue(rgb, np.zeros((256, 256), bool), "gray_lowpass", lp).any()


def test_window_filter_keeps_one_small_response_per_length_and_takes_the_given_box():
    """Windows of ever-changing shapes (a moving subject) must not pile up one 2-D response each: the
    filter keeps one 1-D response per window length. A box handed in (the cue job's, from pass 1)
    gives the same cue as the one computed from the mask."""
    from directanimator.cues.location import tight_box

    rng = np.random.default_rng(5)
    lp = GaussianLowpass(20.48 / 256)
    rgb = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    for side in range(30, 150, 7):  # 18 window shapes
        mask = np.zeros((256, 256), bool)
        mask[20:20 + side, 40:40 + side // 2] = True
        cue = pose_cue(rgb, mask, "gray_lowpass", lp)
        assert np.array_equal(cue, pose_cue(rgb, mask, "gray_lowpass", lp, tight_box(mask)))
    assert not lp._response  # no 2-D response was built
    assert all(r.ndim == 1 and r.numel() <= 256 for r in lp._axis.values()) and len(lp._axis) <= 2 * 18


def test_the_window_wraps_into_the_frame_as_modulo_indexing_does():
    """The filtered window is put back with block copies where it leaves the frame: the same array as
    indexing its rows and columns modulo the frame, for windows inside, across either border, and as
    long as the frame."""
    from directanimator.cues.pose import _place

    rng = np.random.default_rng(11)
    h, w = 37, 53
    for sy, ly, sx, lx in [(3, 20, 5, 30), (-6, 20, 40, 30), (25, 12, -10, 53), (0, 37, 0, 53), (-36, 37, 52, 1)]:
        filtered = rng.random((ly, lx)).astype(np.float32)
        expected = np.zeros((h, w), np.float32)
        expected[np.ix_(np.arange(sy, sy + ly) % h, np.arange(sx, sx + lx) % w)] = filtered
        assert np.array_equal(_place(filtered, sy, sx, (h, w)), expected), (sy, ly, sx, lx)
