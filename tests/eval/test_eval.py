"""Evaluation metrics: perfect values on identical inputs, known values on known perturbations."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from directanimator.assets import ASTRONAUT, WALK_VIDEO
from directanimator.errors import InputError
from directanimator.eval.features import LPIPS, FeatureMetrics, feature_stats, frechet_distance
from directanimator.eval.pixel import l1, psnr, psnr_per_frame, ssim
from directanimator.video import iter_frames, load_image

from ..media import write_clip

from ..conftest import ROOT


def frames(rng, n=4, h=48, w=40):
    return rng.integers(20, 200, (n, h, w, 3)).astype(np.uint8)


def test_pixel_metrics_perfect_and_known_values(rng):
    a = frames(rng)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert psnr(a, a) == pytest.approx(100.0) and l1(a, a) == 0.0
    b = a + 10  # constant offset of 10 grey levels: MSE = (10 / 255)^2
    assert psnr(b, a) == pytest.approx(20 * np.log10(255 / 10), abs=1e-6)
    assert np.allclose(psnr_per_frame(b, a), 20 * np.log10(25.5))
    assert l1(a + 5, a) == pytest.approx(5 / 255)
    shifted = np.roll(a, 3, axis=2)
    assert l1(shifted, a) == pytest.approx(np.abs(shifted.astype(float) - a).mean() / 255)
    assert ssim(shifted, a) < 0.5
    with pytest.raises(InputError, match="differ in shape"):
        ssim(a, a[:, :10])


def test_frechet_distance_closed_form(rng):
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    x = rng.normal(size=(500, 6))
    assert frechet_distance(*feature_stats(x), *feature_stats(x)) == pytest.approx(0.0, abs=1e-6)


def _face_video(tmp_path):
    img = cv2.resize(load_image(ASTRONAUT), (256, 256))
    shots = [np.roll(img, (k % 3) * 2, axis=1) for k in range(6)]
    path = tmp_path / "face.mp4"
    write_clip(path, shots, fps=10)
    return path, np.stack(list(iter_frames(path)))


def test_face_metrics_on_a_real_face(tmp_path):
    from directanimator.eval.face import DlibFaces, face_metrics

    _, video = _face_video(tmp_path)
    faces = DlibFaces()
    detected = [faces(f) for f in video]
    assert all(d is not None for d in detected)
    m = face_metrics(detected, faces(load_image(ASTRONAUT)), detected)
    assert m["FLC"] == pytest.approx(0.0, abs=1e-9) and m["FLC_coverage"] == 1.0
    assert m["FIS"] > 0.9 and m["FTS"] > 0.95
    assert "dlib" in m["face_model"]


def test_video_without_faces_reports_missing_not_crash():
    from directanimator.eval.face import DlibFaces, face_metrics
    from directanimator.synth.render import render_clip

    clip = render_clip(1, 2, 3, 4, 64)  # a cartoon puppet: no face for dlib
    faces = DlibFaces()
    m = face_metrics([faces(f) for f in clip.frames], None, [faces(f) for f in clip.frames])
    assert m["FIS"] is None and m["FTS"] is None and m["FLC"] is None and m["FLC_coverage"] == 0.0


@pytest.mark.slow
def test_plc_is_zero_for_a_video_against_itself():
    from directanimator.eval.pose import MediaPipePose, plc

    video = list(iter_frames(WALK_VIDEO))[:12]
    runs = []
    for _ in range(2):
        pose = MediaPipePose()
        runs.append([pose(f) for f in video])
        pose.close()
    m = plc(runs[0], runs[1])
    assert m["PLC_coverage"] > 0.8 and m["PLC"] == pytest.approx(0.0, abs=1e-6)


def test_lpips_structure_with_stand_in_weights(tmp_path):
    """Random weights in the official files' layout: checks loading and the metric's structure
    (zero for identical frames, positive otherwise), not the official numbers."""
    torch.manual_seed(0)
    alex = {}
    for i, (cin, cout, k) in zip((0, 3, 6, 8, 10), ((3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3),
                                                   (256, 256, 3))):
        alex[f"features.{i}.weight"] = torch.randn(cout, cin, k, k) * 0.05
        alex[f"features.{i}.bias"] = torch.zeros(cout)
    alex["classifier.1.weight"] = torch.zeros(1)
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS.CHANNELS)}
    torch.save(alex, tmp_path / "alexnet.pth")
    torch.save(lin, tmp_path / "alex.pth")
    metric = FeatureMetrics(lpips_alexnet=str(tmp_path / "alexnet.pth"), lpips_lin=str(tmp_path / "alex.pth")).lpips
    a = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    assert metric.frames(a, a) == pytest.approx(0.0, abs=1e-7)
    assert metric.frames(a, 255 - a) > 0


def test_missing_weights_are_named():
    assert set(FeatureMetrics().missing()) == {"FID", "FVD", "LPIPS"}
    assert "inception-2015-12-05.pt" in FeatureMetrics().missing()["FID"]
    with pytest.raises(InputError, match="i3d_torchscript.pt"):
        FeatureMetrics(i3d="/nonexistent/i3d.pt")


@pytest.mark.slow
def test_evaluate_cli_folders(tmp_path):
    path, video = _face_video(tmp_path)
    gen, gt, drv = tmp_path / "gen", tmp_path / "gt", tmp_path / "drv"
    for d in (gen, gt, drv):
        d.mkdir()
        for name in ("a", "b"):
            write_clip(d / f"{name}.mp4", list(video), fps=10)
    r = subprocess.run([sys.executable, "-m", "directanimator", "evaluate", "--generated", str(gen), "--ground-truth",
                        str(gt), "--driving", str(drv), "--reference", str(ASTRONAUT), "--out",
                        str(tmp_path / "report.json"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert r.returncode == 0, r.stderr
    assert "| FID ↓ | SSIM ↑ |" in r.stdout and "FID: unavailable" in r.stdout
    import json

    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["videos"] == 2 and rep["summary"]["SSIM"] == pytest.approx(1.0, abs=1e-6)
    assert rep["summary"]["FLC"] == pytest.approx(0.0, abs=1e-9) and rep["summary"]["FIS"] > 0.9
    (gt / "b.mp4").unlink()
    r = subprocess.run([sys.executable, "-m", "directanimator", "evaluate", "--generated", str(gen), "--ground-truth",
                        str(gt), "--out", str(tmp_path / "r2.json")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "named like b" in r.stderr
    if not torch.cuda.is_available():  # --device: one error line before any work
        r = subprocess.run([sys.executable, "-m", "directanimator", "evaluate", "--generated", str(gen), "--ground-truth",
                            str(gen), "--device", "cuda", "--out", str(tmp_path / "r3.json")], capture_output=True,
                           text=True, cwd=ROOT)
        assert r.returncode == 2 and r.stderr.strip() == "error: --device cuda: no CUDA GPU is visible to torch on this machine"
        assert not (tmp_path / "r3.json").exists()


def test_arcface_option_runs_an_onnx_model_on_aligned_faces(tmp_path):
    """A small stand-in network exported to ONNX in ArcFace's interface (1x3x112x112 in [-1, 1] ->
    embedding): the option's alignment, preprocessing and OpenCV DNN path against torch itself."""
    pytest.importorskip("onnx")
    from directanimator.eval.face import ARCFACE_TEMPLATE, DlibFaces, five_points

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(32, 64)).eval()
    onnx_path = tmp_path / "arcface_standin.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 112, 112), str(onnx_path), dynamo=False)
    faces = DlibFaces(arcface=str(onnx_path))
    img = cv2.resize(load_image(ASTRONAUT), (512, 512))  # no upscaling inside DlibFaces at 512
    face = faces(img)
    assert face is not None and face.embedding.shape == (64,) and "ArcFace" in faces.name
    # same numbers as torch on the same aligned crop
    crop = faces.arcface.aligned(img, face.landmarks)
    x = torch.from_numpy(crop).float().div(127.5).sub(1).permute(2, 0, 1)[None]
    np.testing.assert_allclose(face.embedding, net(x).detach().numpy()[0], rtol=1e-4, atol=1e-4)
    # the alignment maps eyes and nose onto the template (a similarity cannot fit every mouth exactly)
    m, _ = cv2.estimateAffinePartial2D(five_points(face.landmarks), ARCFACE_TEMPLATE, method=cv2.LMEDS)
    mapped = cv2.transform(five_points(face.landmarks)[None], m)[0]
    assert np.abs(mapped[:3] - ARCFACE_TEMPLATE[:3]).max() < 1.5
    with pytest.raises(InputError, match="w600k_r50.onnx"):
        DlibFaces(arcface=str(tmp_path / "missing.onnx"))


def test_dwpose_option_decodes_simcc_back_to_frame_pixels(tmp_path):
    """A stand-in network in DWPose's interface (1x3x384x288 -> SimCC x (133, 576), y (133, 768))
    whose peaks sit at known bins: checks the crop geometry, decoding and thresholding."""
    pytest.importorskip("onnx")
    from directanimator.eval.pose import DWPoseONNX

    bins_x = torch.arange(133) % 500 + 20          # x = bin / 2 in crop pixels
    bins_y = (torch.arange(133) * 5) % 700 + 30

    class StandIn(torch.nn.Module):
        def forward(self, x):
            zero = x.mean() * 0
            sx = torch.nn.functional.one_hot(bins_x, 576).float() * 0.9 + zero
            sy = torch.nn.functional.one_hot(bins_y, 768).float() * 0.8 + zero
            return sx[None], sy[None]

    path = tmp_path / "dwpose_standin.onnx"
    torch.onnx.export(StandIn(), torch.randn(1, 3, 384, 288), str(path), dynamo=False,
                      output_names=["simcc_x", "simcc_y"])
    est = DWPoseONNX(str(path))
    affine = est.box_transform((100, 50, 160, 250))
    assert affine[0, 0] == pytest.approx(384 / (200 * 1.25))  # a tall box: its height fills the input
    decoded = est.decode(torch.nn.functional.one_hot(bins_x, 576).numpy().astype(np.float32),
                         torch.nn.functional.one_hot(bins_y, 768).numpy().astype(np.float32), affine)
    back_x = decoded[:, 0] * affine[0, 0] + affine[0, 2]
    assert np.allclose(back_x, bins_x.numpy() / 2, atol=1e-3)
    frame = np.stack(list(iter_frames(WALK_VIDEO)))[0]
    k = est(frame)
    est.close()
    assert k.shape == (17, 3) and (k[:, 2] == 1).all()  # score 0.8 >= 0.3
    assert np.isfinite(k).all()
    with pytest.raises(InputError, match="dw-ll_ucoco_384.onnx"):
        DWPoseONNX(str(tmp_path / "missing.onnx"))


def test_trivial_answers_and_region_metrics():
    """The three trivial answers of every puppet table, built by hand on rectangles."""
    from directanimator.eval.puppet import moving_region, puppet_metrics, region_psnr, trivial_answers

    size, t = 32, 3
    reference = np.zeros((size, size, 3), np.uint8)
    reference[:] = (10, 20, 30)
    ref_mask = np.zeros((size, size), bool)
    ref_mask[4:12, 4:8] = True  # 4 x 8 person at the top left
    reference[ref_mask] = (200, 100, 50)
    driving = np.full((t, size, size, 3), 77, np.uint8)
    drv_masks = np.zeros((t, size, size), bool)
    drv_masks[:, 10:26, 18:26] = True  # 8 x 16: twice the reference's size, elsewhere
    answers = trivial_answers(reference, ref_mask, driving, drv_masks)
    assert np.array_equal(answers["still"], np.repeat(reference[None], t, 0))
    assert np.array_equal(answers["pasted"], driving)
    fill = answers["silhouette"]
    painted = np.all(fill == (200, 100, 50), axis=-1)
    ys, xs = np.nonzero(painted[0])
    # aligned onto the reference person (eqs 9-12): its box, its size
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 11, 4, 7)
    assert np.all(fill[0][~painted[0]] == (10, 20, 30))  # the reference person is painted over with background
    region = moving_region(drv_masks, ref_mask)
    assert region[0, 5, 5] and region[0, 15, 20] and not region[0, 30, 0]
    truth = answers["still"].copy()
    truth[0, 0, 0] = 0
    assert region_psnr(answers["still"], truth, region) == 100.0  # the changed pixel lies outside the region
    m = puppet_metrics(answers["still"], answers["still"], drv_masks, ref_mask)
    assert m["ssim"] == pytest.approx(1.0, abs=1e-4) and m["psnr"] == m["person_psnr"] == m["moving_psnr"] == 100.0


def test_evaluate_says_when_it_resizes_the_ground_truth(tmp_path):
    """A 64 x 42 generated video against a 512 x 336 ground truth: scored after resizing the ground
    truth to the generated size, and the report's notes say so (also printed by the CLI)."""
    from directanimator.eval.evaluate import evaluate

    rng = np.random.default_rng(0)
    big = [rng.integers(0, 255, (336, 512, 3), dtype=np.uint8) for _ in range(3)]
    small = [cv2.resize(f, (64, 42), interpolation=cv2.INTER_AREA) for f in big]
    (tmp_path / "gen").mkdir(), (tmp_path / "gt").mkdir()
    write_clip(tmp_path / "gen" / "a.mp4", small, fps=10)
    write_clip(tmp_path / "gt" / "a.mp4", big, fps=10)
    report = evaluate(tmp_path / "gen", tmp_path / "gt", face=False, pose=False, progress=False)
    assert report["notes"] == ["a: ground truth 512 x 336 resized to the generated video's 64 x 42 before scoring"]
    write_clip(tmp_path / "gt" / "a.mp4", small, fps=10)
    assert evaluate(tmp_path / "gen", tmp_path / "gt", face=False, pose=False, progress=False)["notes"] == []


def test_motion_iou_on_hand_made_videos():
    """Pixels that differ from the reference photo by more than 40 levels in some channel, in the
    answer and in the truth, intersection over union over all frames: the still photo 0, the truth
    itself 1, an answer moving in half the truth's place and as much elsewhere 1/3; a truth that
    never moves has no score; 40 levels or less is not a move."""
    from directanimator.eval.puppet import motion_iou, puppet_metrics

    ref = np.full((8, 8, 3), 100, np.uint8)
    truth = np.repeat(ref[None], 2, axis=0)
    truth[:, 0:4, 0:2, 1] = 200                        # 8 moved pixels a frame, 16 in all
    half = np.repeat(ref[None], 2, axis=0)
    half[:, 0:2, 0:2, 0] = 0                           # 4 of the truth's a frame ...
    half[:, 6:8, 6:8, 2] = 255                         # ... and 4 elsewhere
    still = np.repeat(ref[None], 2, axis=0)
    assert motion_iou(still, truth, ref) == 0.0 and motion_iou(truth, truth, ref) == 1.0
    assert motion_iou(half, truth, ref) == pytest.approx(8 / 24)
    assert motion_iou(still, still, ref) is None
    faint = still.copy()
    faint[:, 0:4, 0:2] = 140
    assert motion_iou(faint, truth, ref) == 0.0
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 0:4, 0:2] = True
    m = puppet_metrics(half, truth, masks, masks[0], ref)
    assert m["motion_iou"] == pytest.approx(8 / 24) and "motion_iou" not in puppet_metrics(half, truth, masks, masks[0])


def test_the_puppet_table_has_motion_iou_next_to_the_trivial_answers():
    from directanimator.eval.puppet import markdown_table

    row = {"ssim": 0.8, "psnr": 23.0, "person_psnr": 16.0, "moving_psnr": 17.0, "face_psnr": 14.0, "motion_iou": 0.344}
    still = dict(row, motion_iou=0.0)
    lines = markdown_table({"model": row}, {"still": still, "silhouette": dict(row, motion_iou=None)})
    assert lines[0].endswith("| motion IoU ↑ |") and lines[1].count("|") == lines[0].count("|")
    assert lines[2].startswith("| trivial: reference photo held still |") and lines[2].endswith("| 0.000 |")
    assert lines[3].endswith("| n/a |") and lines[4] == "| model | 0.800 | 23.00 | 16.00 | 17.00 | 14.00 | 0.344 |"
