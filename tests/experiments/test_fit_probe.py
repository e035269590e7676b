"""experiments/fit_probe.py's fit score on a small puppet world, with stand-in pipelines."""

from __future__ import annotations

import json

import numpy as np

from ..scripts import load_experiment


class Replay:
    """A stand-in pipeline: writes the driving clip itself (the truth of a self-reconstruction), or the
    reference photo held still; records the reference photos it was given."""

    def __init__(self, still: bool = False):
        self.still, self.references = still, []

    def __call__(self, reference, driving, out, **kwargs):
        from directanimator.video import VideoWriter, iter_frames

        self.references.append(reference)
        frames = list(iter_frames(driving))
        with VideoWriter(out, 15, reference.shape[1], reference.shape[0], crf=0) as w:
            for f in frames:
                w.write(reference if self.still else f)


def test_fit_scores_reconstruct_training_clips_from_their_stored_reference(puppet_dataset, tiny_cfg, tmp_path):
    from directanimator.data.format import clip_dir, read_annotations
    from directanimator.video import iter_frames
    from directanimator.eval.puppet import TRIVIAL_NAMES
    from directanimator.model import build_codec

    fp = load_experiment("fit_probe")
    truth, still = Replay(), Replay(still=True)
    rows = fp.fit_scores(puppet_dataset, {"truth": truth, "still stand-in": still}, {"codec": build_codec(tiny_cfg().model)})
    manifest = [json.loads(x) for x in (puppet_dataset / "manifest.jsonl").read_text().splitlines() if x.strip()]
    train = [m["clip_id"] for m in manifest if m["split"] == "train"]
    assert len(rows["truth"]) == len(train) and len(truth.references) == len(train)
    for cid, ref in zip(train, truth.references):  # the stored reference through the clips' video
        stored = read_annotations(puppet_dataset, cid)["reference_frame"]  # codec, not the clip's frame 0
        assert np.array_equal(ref, fp.as_stored(stored, tmp_path))
        assert not np.array_equal(ref, next(iter_frames(clip_dir(puppet_dataset, cid) / "video.mp4")))
    m = fp.means(rows)
    assert m["truth"]["motion_iou"] > 0.9 and m["truth"]["person_psnr"] > 30
    assert m["still stand-in"]["motion_iou"] == 0.0
    still_row = m[TRIVIAL_NAMES["still"]]
    assert abs(still_row["person_psnr"] - m["still stand-in"]["person_psnr"]) < 0.5
    assert TRIVIAL_NAMES["pasted"] not in m  # the pasted clip is the truth itself here
    assert set(m) >= {"coarse oracle (every 4x4 colour average right)", TRIVIAL_NAMES["silhouette"]}


def test_an_arm_is_clips_then_person_weight_then_seed():
    import pytest

    fp = load_experiment("fit_probe")
    assert fp.parse_arm("256") == (256, 0.0, 0)
    assert fp.parse_arm("256:4") == (256, 4.0, 0)
    assert fp.parse_arm("16:0.5:2") == (16, 0.5, 2)
    for bad in ("x", "16:a", "16:1:2:3"):
        with pytest.raises(SystemExit, match="error: --clips takes"):
            fp.parse_arm(bad)
