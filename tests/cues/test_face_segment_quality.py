import numpy as np
import pytest

from directanimator.cues.face import enlarged_square, face_cue, head_roi, pick_face, track_boxes
from directanimator.cues.quality import mask_stats, quality_scores
from directanimator.cues.segment import (GivenMasks, Segmenter, SubjectTracker, crop_square, paste_square,
                                         select_subject)


def box(x0, y0, x1, y1):
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def test_track_boxes_fills_short_gaps_and_not_long_ones():
    b = [box(0, 0, 10, 10), None, None, box(30, 0, 40, 10), None, None, None, None, box(0, 0, 10, 10)]
    out = track_boxes(b, max_gap=2, smooth_radius=0)
    assert np.allclose(out[1], box(10, 0, 20, 10)) and np.allclose(out[2], box(20, 0, 30, 10))
    assert all(out[i] is None for i in range(4, 8))


def test_smoothing_keeps_a_steady_box_and_averages_jitter():
    steady = [box(10, 10, 20, 20)] * 5
    assert all(np.allclose(o, steady[0]) for o in track_boxes(steady, 0, 2))
    jitter = [box(10, 10, 20, 20), box(12, 10, 22, 20), box(10, 10, 20, 20)]
    mid = track_boxes(jitter, 0, 1)[1]
    assert np.allclose(mid, box(32 / 3, 10, 62 / 3, 20))


def test_face_cue_enlarges_and_centres():
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[60:70, 20:30] = 255  # a 10x10 "face" off-centre
    cue = face_cue(rgb, box(20, 60, 30, 70), margin=1.0, out_size=64)
    # The square is 20 px around the face, so the face fills the central half of the cue.
    assert cue.shape == (64, 64, 3)
    assert cue[32, 32].min() == 255 and cue[2, 2].max() == 0
    white = np.argwhere(cue[:, :, 0] > 127)
    assert np.allclose(white.mean(0), [31.5, 31.5], atol=1.0)
    assert 28 <= white[:, 0].ptp() + 1 <= 36
    # Ablation: crop kept in place.
    kept = face_cue(rgb, box(20, 60, 30, 70), margin=1.0, out_size=100, enlarge_and_center=False)
    assert kept[65, 25].min() == 255 and kept[10, 10].max() == 0
    assert np.array_equal(kept[60:70, 20:30], rgb[60:70, 20:30])
    assert face_cue(rgb, None, 1.0, 64).max() == 0
    assert np.allclose(enlarged_square(box(0, 0, 10, 20), 0.5), box(-10, -5, 20, 25))


def test_pick_face_prefers_the_subject():
    subject = np.zeros((100, 100), bool)
    subject[50:100, 50:100] = True
    dets = [(box(0, 0, 10, 10), 0.99), (box(60, 60, 70, 70), 0.6)]
    assert np.allclose(pick_face(dets, subject), box(60, 60, 70, 70))
    assert np.allclose(pick_face(dets, None), box(0, 0, 10, 10))
    assert pick_face([(box(0, 0, 10, 10), 0.9)], subject) is None


def test_head_roi_sits_on_top_of_the_mask():
    subject = np.zeros((200, 200), bool)
    subject[40:190, 80:120] = True
    x0, y0, x1, y1 = head_roi(subject, np.array([80, 120, 40, 190.0]))
    assert x1 - x0 == y1 - y0 == round(0.45 * 150)
    assert x0 < 100 < x1 and y0 < 40 + 18 < y1


def test_select_subject_tracks_the_first_person():
    fg = np.zeros((100, 100), bool)
    fg[10:60, 10:30] = True   # person A (1000 px)
    fg[10:80, 60:90] = True   # person B (2100 px), bigger
    first = select_subject(fg, None, 10)
    assert first[50, 70] and not first[30, 20]          # largest first
    prev = np.zeros_like(fg)
    prev[12:58, 12:28] = True
    tracked = select_subject(fg, prev, 10)
    assert tracked[30, 20] and not tracked[50, 70]      # then the one that overlaps the previous
    # A detached hand inside the subject's (widened) box stays with it; noise below min_area does not.
    fg2 = np.zeros((100, 100), bool)
    fg2[20:80, 40:60] = True
    fg2[30:35, 61:63] = True  # inside the box widened by 15% (x up to 63)
    fg2[0:2, 0:2] = True
    s = select_subject(fg2, None, 10)
    assert s[32, 62] and not s[0, 0]


def test_crop_and_paste_round_trip():
    rng = np.random.default_rng(0)
    img = rng.random((50, 60)).astype(np.float32)
    roi = (-5, 10, 25, 40)  # leaves the frame on the left
    crop = crop_square(img, roi)
    assert crop.shape == (30, 30) and np.all(crop[:, :5] == 0)
    back = paste_square(crop, roi, img.shape)
    assert np.array_equal(back[10:40, 0:25], img[10:40, 0:25]) and back[:10].sum() == 0


def test_given_masks_and_protocol():
    masks = [np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8)]
    g = GivenMasks(masks)
    assert isinstance(g, Segmenter)
    assert g.segment(np.zeros((8, 8, 3), np.uint8), 0).max() == 1.0
    tracker = SubjectTracker(g, 0.5, 1)
    assert not tracker.roi  # ground truth is used as it is
    prob, subject = tracker(np.zeros((8, 8, 3), np.uint8), 1)
    assert not subject.any()


def test_quality_flags_area_jumps_and_fragments():
    def stats(area_rows, fragmented=False):
        subject = np.zeros((100, 100), bool)
        subject[10:10 + area_rows, 10:50] = True
        if fragmented:
            subject[10:10 + area_rows:4, :] = False
        return mask_stats(subject.astype(np.float32), subject)

    seq = [stats(40), stats(40), stats(80), stats(40), stats(40, fragmented=True), stats(40)]
    scores = quality_scores(seq, max_area_jump=0.6)
    assert scores[0] == pytest.approx(1.0) and scores[1] < 0.5  # neighbour of the jump suffers a little
    assert scores[2] == 0.0        # doubled area against its neighbours
    assert scores[4] < 0.5         # fragmented
    empty = mask_stats(np.zeros((10, 10), np.float32), np.zeros((10, 10), bool))
    assert quality_scores([empty], 0.6)[0] == 0.0


def test_in_memory_cues_from_ground_truth_masks():
    """The MemorySink path with GivenMasks on a puppet clip: the Pose Cue lives exactly inside the
    given masks and the alignment is eqs 9-10 of the given masks' boxes."""
    from directanimator.config import CuesConfig
    from directanimator.cues import extract_cues_in_memory
    from directanimator.cues.location import estimate_alignment, tight_box
    from directanimator.synth import render_clip

    driving = render_clip(1, 0, 2, 9, 128)
    reference = render_clip(3, 1, 4, 1, 128)
    cfg = CuesConfig(size=128)
    cfg.pose.mode = "gray"
    cues = extract_cues_in_memory(reference.frames[0], list(driving.frames), cfg, segmenter=GivenMasks(driving.masks),
                                  reference_mask=reference.masks[0].astype(np.uint8))
    assert cues.pose_cue.shape == (9, 128, 128) and cues.face_cue.shape == (9, 128, 128, 3)
    assert np.array_equal(cues.reference_mask, reference.masks[0])
    valid = cues.pose_valid
    assert valid.sum() >= 7  # exact masks: at most a frame or two lose on the area-jump term
    for t in np.nonzero(valid)[0]:
        assert cues.pose_cue[t][~driving.masks[t]].max() == 0
        gray = (driving.frames[t].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5)
        assert np.abs(cues.pose_cue[t][driving.masks[t]].astype(int) - gray.astype(np.uint8)[driving.masks[t]]).max() <= 1
    expected = estimate_alignment(tight_box(reference.masks[0]),
                                  [tight_box(m) if v else None for m, v in zip(driving.masks, valid)])
    assert cues.report.alignment["scale"] == pytest.approx(expected.scale)
    assert np.allclose(cues.report.alignment["translation"], expected.translation)


def test_location_cue_masks_sit_on_the_reference_person():
    """The Location Cue is the driving masks moved onto the reference person (eqs 9-12): a driving
    rectangle elsewhere and of another size must come out over the reference's rectangle. (Planted
    bug it catches: masks left unaligned.)"""
    from directanimator.config import CuesConfig
    from directanimator.cues import extract_cues_in_memory
    from directanimator.cues.location import tight_box

    size = 64
    ref_mask = np.zeros((size, size), np.uint8)
    ref_mask[8:40, 6:22] = 1  # 16 x 32 at the left
    driving = np.full((5, size, size, 3), 90, np.uint8)
    masks = []
    for t in range(5):
        m = np.zeros((size, size), np.float32)
        m[20:60, 36 + t:56 + t] = 1  # 20 x 40 at the right, drifting
        masks.append(m)
    reference = np.full((size, size, 3), 90, np.uint8)
    cfg = CuesConfig(size=size)
    cfg.location.mode = "hard"
    cfg.location.grid_cell = 1
    cues = extract_cues_in_memory(reference, list(driving), cfg, segmenter=GivenMasks(masks), reference_mask=ref_mask)
    got = np.array([tight_box(b > 0.5) for b in cues.body_mask])
    want = np.array(tight_box(ref_mask.astype(bool)), np.float64)
    # eq 11 maps the mean driving box onto the reference box: scale 32/40, the drift scaled too
    assert np.abs(got.mean(0) - want).max() <= 1.0
    assert np.abs(got[:, 0] - got[0, 0] - 0.8 * np.arange(5)).max() <= 1.0


class _ScriptedSegmenter:
    """Returns prepared probability maps, whatever it is shown (a crop or the frame)."""

    name, supports_roi = "scripted", True

    def __init__(self, maps):
        self.maps = maps

    def segment(self, rgb, index):
        import cv2

        return cv2.resize(self.maps[index], rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)


def test_subject_selection_inside_the_roi_matches_the_whole_frame():
    """The tracker selects the subject on the ROI's part of the frame only (its probability map is zero
    outside): the same mask as on the whole frame, also where the previous subject grows into the ROI
    from outside it (a blob at the ROI's edge touched only by that growth)."""
    from directanimator.cues.segment import SubjectTracker, _grow, select_subject

    rng = np.random.default_rng(3)
    h = w = 96
    for trial in range(60):
        prob = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(1, 5)):  # blobs, some at the window's border
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            prob[y:y + rng.integers(2, 20), x:x + rng.integers(2, 20)] = 0.9
        previous = np.zeros((h, w), bool)
        y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
        previous[y:y + rng.integers(3, 30), x:x + rng.integers(3, 30)] = True
        x0, y0 = int(rng.integers(-10, 40)), int(rng.integers(-10, 40))
        roi = (x0, y0, x0 + int(rng.integers(20, 70)), y0 + int(rng.integers(20, 70)))
        inside = np.zeros((h, w), bool)
        inside[max(0, roi[1]):roi[3], max(0, roi[0]):roi[2]] = True
        prob *= inside  # what a pasted ROI answer looks like
        tracker = SubjectTracker(_ScriptedSegmenter([prob]), 0.5, 4)
        whole = select_subject(prob >= 0.5, previous, 4)
        assert np.array_equal(tracker._select_in_roi(prob, roi, previous, None), whole), trial
    # the growth from outside the ROI counts: a blob just inside its left edge, the previous mask just outside
    prob = np.zeros((h, w), np.float32)
    prob[40:50, 30:34] = 0.9  # blob A at the ROI's left edge (x = 30)
    prob[40:60, 60:80] = 0.9  # blob B, larger, inside
    previous = np.zeros((h, w), bool)
    previous[40:50, 24:28] = True  # left of the ROI; grown by 4 px it reaches A
    roi = (30, 20, 90, 80)
    assert select_subject(prob >= 0.5, previous, 4)[45, 31]  # A follows the previous subject
    tracker = SubjectTracker(_ScriptedSegmenter([prob]), 0.5, 4)
    assert np.array_equal(tracker._select_in_roi(prob, roi, previous, None), select_subject(prob >= 0.5, previous, 4))
    assert _grow(previous)[45, 30] and not _grow(previous[:, 30:])[45, 0]


def _mask_stats_whole_frame(prob, subject):
    """mask_stats as it was computed on the whole frame (the reference)."""
    import cv2

    area = int(subject.sum())
    count, _, stats, _ = cv2.connectedComponentsWithStats(subject.astype(np.uint8), connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else area
    ys, xs = np.nonzero(subject)
    box = prob[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    near = box[box > 0.1]
    return area, largest / area, float(np.abs(2.0 * near - 1.0).mean()) if near.size else 0.0


def test_mask_stats_on_the_subject_box_match_the_whole_frame():
    from directanimator.cues.location import tight_box

    rng = np.random.default_rng(5)
    for _ in range(20):
        prob = rng.random((64, 80)).astype(np.float32)
        subject = np.zeros((64, 80), bool)
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, 56), rng.integers(0, 72)
            subject[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = True
        ref = _mask_stats_whole_frame(prob, subject)
        for got in (mask_stats(prob, subject, tight_box(subject)), mask_stats(prob, subject)):
            assert (got.area, got.compactness) == ref[:2] and got.confidence == pytest.approx(ref[2], rel=1e-6)
    assert mask_stats(prob, np.zeros((64, 80), bool)).area == 0


class _ScriptedDetector:
    """A face detector that finds the face at the frame centre only on the calls `finds(call)` says."""

    name = "scripted"

    def __init__(self, finds):
        self.finds, self.calls = finds, 0

    def detect(self, rgb):
        self.calls += 1
        h, w = rgb.shape[:2]
        box = np.array([0.4 * w, 0.2 * h, 0.6 * w, 0.4 * h])
        return [(box, 0.9)] if self.finds(self.calls - 1) else []


def test_full_range_fallback_backs_off_while_it_fails_and_comes_back_at_once():
    """Where the short-range detector misses, the full-range one is asked; while it fails too it sits
    out min(k, max_skip) frames after its k-th failure in a row, and after one success it is asked on
    every frame again. A reference photo (index None) is always asked and leaves the back-off alone."""
    from directanimator.config import CuesConfig
    from directanimator.cues import face as F

    rgb = np.zeros((64, 64, 3), np.uint8)
    subject = np.zeros((64, 64), bool)
    subject[8:60, 16:48] = True
    box = np.array([16, 48, 8, 60])
    head = _ScriptedDetector(lambda call: False)
    asked = []
    wide = _ScriptedDetector(lambda call: asked[call] >= 13)  # the face becomes findable at frame 13
    finder = F.SubjectFaceFinder(head, wide, CuesConfig().face.fallback_max_skip)
    real_detect = wide.detect

    found = []
    for index in range(20):
        wide.detect = lambda img, index=index: (asked.append(index), real_detect(img))[1]
        found.append(finder(rgb, subject, box, None, index) is not None)
    assert asked == [0, 2, 5, 9, 13, 14, 15, 16, 17, 18, 19]
    assert found == [i >= 13 for i in range(20)]
    assert finder.wide_calls == len(asked) and head.calls == 20
    # the longest run of frames sat out stays under what the Face Cue's gap filling bridges
    assert CuesConfig().face.fallback_max_skip == 3 < CuesConfig().face.max_gap

    never = F.SubjectFaceFinder(_ScriptedDetector(lambda c: False), _ScriptedDetector(lambda c: False), 0)
    for index in range(5):  # max_skip 0: asked on every frame the short range misses
        never(rgb, subject, box, None, index)
    assert never.wide.calls == 5

    failing = F.SubjectFaceFinder(_ScriptedDetector(lambda c: False), _ScriptedDetector(lambda c: False))
    for index in range(3):
        failing(rgb, subject, box, None, index)
    skip_before = failing._wide_skip
    calls = failing.wide.calls
    for _ in range(3):  # a photo: asked every time, the video's back-off untouched
        failing(rgb, subject, box, None, None)
    assert failing.wide.calls == calls + 3 and failing._wide_skip == skip_before


def test_the_configured_fallback_back_off_reaches_the_face_search(monkeypatch):
    """cues.face.fallback_max_skip is what the job's face search uses."""
    from directanimator.assets import ASTRONAUT, WALK_VIDEO
    from directanimator.config import CuesConfig, FaceCueConfig
    from directanimator.cues import extract
    from directanimator.video import iter_frames, load_image

    made = []

    class Recorded(extract.SubjectFaceFinder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(extract, "SubjectFaceFinder", Recorded)
    frames = list(iter_frames(WALK_VIDEO))[:6]
    for skip in (0, 5):
        extract.extract_cues_in_memory(load_image(ASTRONAUT), frames,
                                       CuesConfig(size=64, face=FaceCueConfig(fallback_max_skip=skip)))
        assert made[-1].max_skip == skip and made[-1].wide is not None


def test_components_keep_opencvs_labels_with_16_bit_ones_only_where_they_fit():
    import cv2

    from directanimator.cues.segment import components

    rng = np.random.default_rng(3)
    for shape in ((90, 120), (257, 301)):
        mask = cv2.dilate((rng.random(shape) > 0.995).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        count, labels, stats = components(mask)
        ref = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        assert labels.dtype == np.uint16 and count == ref[0] > 10
        assert np.array_equal(labels, ref[1]) and np.array_equal(stats, ref[2])
    # isolated pixels a pixel apart: 300 x 300 of them do not fit in 16 bits
    dots = np.zeros((600, 600), bool)
    dots[::2, ::2] = True
    count, labels, _ = components(dots)
    assert count == 300 * 300 + 1 and labels.dtype == np.int32 and labels.max() == 300 * 300
    # a view that is not contiguous gives the same components as its copy
    view = dots[1:401:1, 0:400]
    assert components(view)[0] == components(np.ascontiguousarray(view))[0] == 200 * 200 + 1


def test_a_crop_inside_the_frame_can_be_a_view():
    img = np.arange(50 * 60 * 3, dtype=np.uint8).reshape(50, 60, 3)
    inside, outside = (5, 10, 35, 40), (-5, 10, 25, 40)
    v = crop_square(img, inside, view=True)
    assert np.shares_memory(v, img) and np.array_equal(v, crop_square(img, inside))
    c = crop_square(img, outside, view=True)
    assert not np.shares_memory(c, img) and np.array_equal(c, crop_square(img, outside))
    assert not np.shares_memory(crop_square(img, inside), img)


def test_a_whole_body_small_in_a_tall_frame_is_found_from_the_first_frames_with_pose_seeding():
    """The walking clip pasted into a 540 x 960 portrait frame (the body a quarter of its height), cut
    so that tracking starts on its own 20th frame: the selfie segmenter alone finds no one in any
    frame; seeded by MediaPipe Pose's full-body detector it finds the person in the first frames, with
    a mask close to the one it finds on the clip itself (benchmarks/full_body.py has the table)."""
    from directanimator.assets import WALK_VIDEO
    from directanimator.config import CuesConfig
    from directanimator.cues.segment import MediaPipeSegmenter
    from directanimator.video import iter_frames

    from ..scripts import load_benchmark

    full_body = load_benchmark("full_body")
    frames = list(iter_frames(WALK_VIDEO))[20:28]
    own = MediaPipeSegmenter(0)
    masks = [(own.segment(f, -1) >= 0.5).astype(np.float32) for f in frames]
    own.close()
    cfg = CuesConfig()
    alone = full_body.track(list(full_body.clip(frames, masks, 960, 540)), False, cfg)
    seeded = full_body.track(list(full_body.clip(frames, masks, 960, 540)), True, cfg)
    assert alone["found"] == 0 and seeded["found"] == len(frames) and seeded["iou"] >= 0.7, (alone, seeded)


def test_the_tracked_person_stays_apart_when_someone_walks_into_them():
    """Two people as white shapes on black (a segmenter that returns the white pixels, in crops too):
    the taller one is followed; a second walks in from the right until the two are one blob. The
    subject keeps its own extent (it became the merged blob before), then goes on being tracked."""
    from directanimator.cues.location import tight_box
    from directanimator.cues.segment import SubjectTracker

    class White:
        name, supports_roi = "white", True

        def segment(self, rgb, index):
            return (rgb[..., 0] > 128).astype(np.float32)

    tracker = SubjectTracker(White(), 0.5, 20, roi_input=128)
    widths = []
    for i in range(12):
        frame = np.zeros((256, 256, 3), np.uint8)
        frame[30:230, 40:90] = 255                  # the subject: 50 wide, 200 tall, standing still
        x = 200 - 12 * i                             # the other: 40 wide, 150 tall, from x = 200 to 68
        frame[80:230, x:x + 40] = 255
        _, subject = tracker(frame, i)
        box = tight_box(subject)
        widths.append(box[1] - box[0])
        assert box[0] >= 40 - 11 and box[1] <= 90 + 11, (i, box)  # within its own box and the margin
    assert abs(widths[0] - 50) <= 2 and max(widths) <= 50 * (1 + 2 * 0.2) + 2, widths
