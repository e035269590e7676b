from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from safetensors.numpy import load_file

from directanimator.errors import InputError
from directanimator.storage import StreamingSafetensorsWriter, atomic_output_dir
from directanimator.video import Letterbox, VideoWriter, iter_frames, load_image, probe_video

from .media import write_clip


def test_streaming_safetensors_loads_with_the_library(tmp_path):
    w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", tmp_path)
    frames = [np.full((3, 4), i, np.uint8) for i in range(5)]
    for f in frames:
        w.append("a", f)
        w.append("b", f.astype(np.float32) / 2)
    w.put("ref", np.arange(6, dtype=np.uint8).reshape(2, 3))
    w.close({"fps": "30"})
    data = load_file(str(tmp_path / "x.safetensors"))
    assert np.array_equal(data["a"], np.stack(frames))
    assert np.array_equal(data["b"], np.stack(frames).astype(np.float32) / 2)
    assert data["ref"].shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]  # spool files removed
    with pytest.raises(ValueError):
        w2 = StreamingSafetensorsWriter(tmp_path / "y.safetensors", tmp_path)
        w2.append("a", np.zeros((2, 2), np.uint8))
        w2.append("a", np.zeros((3, 2), np.uint8))


@pytest.mark.parametrize("kernel", ["copy_file_range", "refused", "partial"])
def test_streaming_safetensors_assembles_with_and_without_the_kernel_copy(tmp_path, monkeypatch, kernel):
    """The spool files are appended in the kernel (copy_file_range); where it refuses, or stops part
    way, the rest goes through Python's buffers: the same file either way."""
    import os

    real = os.copy_file_range
    calls = []

    def fake(src, dst, count, *a):
        calls.append(count)
        if kernel == "refused":
            raise OSError(18, "Invalid cross-device link")
        return real(src, dst, min(count, 1000)) if len(calls) == 1 else 0  # then "end of file"

    if kernel != "copy_file_range":
        monkeypatch.setattr(os, "copy_file_range", fake)
    w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", tmp_path)
    frames = [np.random.default_rng(i).integers(0, 255, (64, 48), dtype=np.uint8) for i in range(7)]
    for f in frames:
        w.append("a", f)
        w.append("c", f.astype(np.float32))
    w.put("b", np.arange(5, dtype=np.int64))
    w.close({"k": "v"})
    data = load_file(str(tmp_path / "x.safetensors"))
    assert np.array_equal(data["a"], np.stack(frames)) and np.array_equal(data["c"], np.stack(frames).astype(np.float32))
    assert np.array_equal(data["b"], np.arange(5))
    assert kernel == "copy_file_range" or calls


@pytest.mark.parametrize("case", ["complete", "fewer_frames", "long_metadata"])
def test_preallocated_safetensors_writes_in_place_and_the_same_file(tmp_path, monkeypatch, case):
    """With the frame count known first (`preallocate`), frames go straight to their place in the final
    file: no spool file, no copy at close; fewer frames than announced, or metadata longer than the room
    kept for the header, fall back to a compacted copy. Loaded, the same tensors and metadata as the
    spooled way."""
    import os

    from safetensors import safe_open

    frames = [np.random.default_rng(i).integers(0, 255, (16, 12, 3), dtype=np.uint8) for i in range(6)]
    kept = frames[:4] if case == "fewer_frames" else frames
    meta = {"fps": "30", "alignment": "x" * (40000 if case == "long_metadata" else 10)}
    copies = []
    real = os.copy_file_range
    monkeypatch.setattr(os, "copy_file_range", lambda *a: copies.append(a) or real(*a))

    def write(folder, preallocate):
        folder.mkdir()
        w = StreamingSafetensorsWriter(folder / "x.safetensors", folder)
        w.put("ref", np.arange(10, dtype=np.int64))
        if preallocate:
            w.preallocate(len(frames), {"img": frames[0], "valid": np.array([1], np.uint8),
                                        "mask": frames[0][:, :, 0].astype(np.float32)})
            assert (folder / "x.safetensors.partial").exists()
        for i, f in enumerate(kept):
            w.append("img", f)
            w.append("valid", np.array([i % 2], np.uint8))
            w.append("mask", f[:, :, 0].astype(np.float32) / 7)
        w.close(meta)
        assert sorted(p.name for p in folder.iterdir()) == ["x.safetensors"]
        with safe_open(str(folder / "x.safetensors"), framework="numpy") as g:
            return {k: g.get_tensor(k) for k in g.keys()}, g.metadata()

    spooled, spooled_meta = write(tmp_path / "spool", False)
    copies.clear()
    direct, direct_meta = write(tmp_path / "direct", True)
    assert sorted(direct) == sorted(spooled) == ["img", "mask", "ref", "valid"]
    for k in spooled:
        assert direct[k].dtype == spooled[k].dtype and np.array_equal(direct[k], spooled[k]), k
    assert direct["img"].shape[0] == len(kept) and direct_meta == spooled_meta == meta
    assert not copies  # never through the spool's kernel copy
    w = StreamingSafetensorsWriter(tmp_path / "late.safetensors", tmp_path)
    w.append("a", np.zeros(3, np.uint8))
    with pytest.raises(RuntimeError, match="before the first append"):
        w.preallocate(2, {"a": np.zeros(3, np.uint8)})
    w = StreamingSafetensorsWriter(tmp_path / "over.safetensors", tmp_path)
    w.preallocate(1, {"a": np.zeros(3, np.uint8)})
    w.append("a", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="more than the 1 frames"):
        w.append("a", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="differs"):
        w2 = StreamingSafetensorsWriter(tmp_path / "shape.safetensors", tmp_path)
        w2.preallocate(2, {"a": np.zeros(3, np.uint8)})
        w2.append("a", np.zeros(4, np.uint8))


def test_atomic_output_dir(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "1"          # the old result survives a failure
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # and no partial folder is left
    with pytest.raises(InputError, match="not empty"):
        with atomic_output_dir(out):
            pass


def test_letterbox_maps_back_to_source():
    lb = Letterbox.fit(200, 100, 64)
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.32, 0, 16)
    img = np.zeros((100, 200), np.uint8)
    img[40:60, 90:110] = 255
    out = lb.apply(img)
    ys, xs = np.nonzero(out > 127)
    src = lb.to_source(np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]))[0]
    assert np.allclose(src, [100, 50], atol=1.0)


def test_writer_keeps_fps_frames_and_audio(tmp_path):
    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(10)]
    src = tmp_path / "src.mp4"
    write_clip(src, frames, fps=25, audio=True)
    info = probe_video(src)
    assert info.fps == 25 and info.has_audio and (info.width, info.height) == (48, 32)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, info.fps_fraction, 48, 32, audio_from=src) as w:
        for f in iter_frames(src):
            w.write(f[:, :, 0])  # gray frames are accepted
    back = probe_video(out)
    assert back.fps == 25 and back.has_audio
    decoded = list(iter_frames(out))
    assert len(decoded) == 10 and decoded[0].shape == (32, 48, 3)
    assert abs(int(decoded[5].mean()) - 100) <= 3


def test_variable_frame_rate_is_detected(tmp_path):
    path = tmp_path / "vfr.mp4"
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=30)
    s.width = s.height = 32
    s.pix_fmt = "yuv420p"
    s.codec_context.time_base = Fraction(1, 90000)
    t = 0
    for i in range(12):
        f = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        f.pts, f.time_base = t, Fraction(1, 90000)
        t += 3000 if i % 2 else 9000
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    assert probe_video(path).variable_frame_rate
    assert len(list(iter_frames(path))) == 12


def test_load_image_variants(tmp_path):
    gray = np.full((10, 12), 77, np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert load_image(tmp_path / "g.png").shape == (10, 12, 3)
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 2] = 200  # red in BGRA
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    img = load_image(tmp_path / "a.png")
    assert img.shape == (10, 12, 3) and img[0, 0, 0] == 200
    cv2.imwrite(str(tmp_path / "d.png"), np.full((4, 4), 65535, np.uint16))
    assert load_image(tmp_path / "d.png").max() == 255
    (tmp_path / "bad.jpg").write_text("not an image")
    with pytest.raises(InputError, match="cannot decode image"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(InputError, match="file not found"):
        load_image(tmp_path / "missing.jpg")


def test_audio_an_mp4_cannot_hold_is_reencoded_to_aac(tmp_path):
    """A webcam-style AVI with 8-bit PCM sound: written as mp4 with AAC (it used to crash with
    "'mp4' format does not support 'pcm_u8' codec")."""
    import av

    src = tmp_path / "webcam.avi"
    frames = [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(10)]
    write_clip(src, frames, fps=10, audio=True, video_codec="mpeg4", audio_codec="pcm_u8", audio_rate=8000)
    assert av.open(str(src)).streams.audio[0].codec_context.name == "pcm_u8"
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 10, 64, 64, audio_from=src) as w:
        for f in iter_frames(src):
            w.write(f)
    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        samples = sum(fr.samples for fr in c.decode(audio=0))
    assert samples >= 0.5 * 8000  # most of its second of sound kept
    assert len(list(iter_frames(out))) == 10


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_are_turned_as_their_exif_orientation_says(tmp_path, orientation):
    """A phone photo stored sideways with an EXIF orientation tag is read upright, as Pillow's own
    exif_transpose shows it (it used to be processed as stored)."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(orientation)
    stored = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif, quality=100, subsampling=0)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = load_image(path)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want).mean() < 2.0  # the two JPEG decoders differ by a level or so


@pytest.mark.parametrize("clockwise", [90, 270])
def test_phone_rotation_is_honoured(tmp_path, clockwise):
    """A sideways-stored clip with a display rotation is read upright (it used to be processed
    sideways: 0 faces found in a rotated phone clip), and probe reports the upright size."""
    from .media import set_display_rotation

    stored = np.zeros((3, 16, 32, 3), np.uint8)
    stored[:, :4, :4] = 255  # a marker at the stored top-left
    plain = tmp_path / "plain.mp4"
    write_clip(plain, list(stored), fps=10)
    rotated = tmp_path / "rotated.mp4"
    set_display_rotation(plain, rotated, clockwise)
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotation) == (16, 32, (360 - clockwise) % 360)
    frames = list(iter_frames(rotated))
    assert len(frames) == 3 and frames[0].shape == (32, 16, 3)
    want = np.rot90(stored[0], -clockwise // 90)  # the stored frame turned clockwise
    assert np.abs(frames[0].astype(int) - want).mean() < 8
    assert probe_video(plain).rotation == 0


def _write_many(path: str, tag: bytes, count: int, barrier) -> None:
    from directanimator.storage import atomic_write_bytes

    barrier.wait()  # both start together
    for _ in range(count):
        atomic_write_bytes(path, tag * 4096)


def test_atomic_write_from_two_processes_at_once(tmp_path):
    """Two processes writing one file (two `preprocess` runs on one dataset's failures-0.jsonl) must
    not rename each other's temporary file away: each write lands whole, none fails, nothing is left."""
    import multiprocessing as mp

    path = str(tmp_path / "shared.jsonl")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(path, tag, 2000, barrier)) for tag in (b"a", b"b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    data = (tmp_path / "shared.jsonl").read_bytes()
    assert data in (b"a" * 4096, b"b" * 4096)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.jsonl"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from directanimator.storage import atomic_write

    path = tmp_path / "plot.png"
    path.write_bytes(b"old")

    def broken(tmp):
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # same folder, same extension
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    atomic_write(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_prefetched_keeps_order_bounds_memory_raises_and_stops_early():
    """The decode-ahead thread of the cue extractor: items in order; at most `depth` (+1 in hand)
    produced ahead of the consumer; a producer's exception reaches the consumer; a consumer that stops
    early stops the producer (no thread left behind, the source closed)."""
    import threading
    import time

    from directanimator.cues.extract import prefetched

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))
    made = []

    def counting():
        for i in range(100):
            made.append(i)
            yield i

    it = prefetched(counting(), depth=3)
    assert next(it) == 0
    time.sleep(0.3)
    assert len(made) <= 1 + 3 + 1  # the one consumed, the queue, the one waiting to be put

    def failing():
        yield 1
        raise ValueError("broken frame")

    with pytest.raises(ValueError, match="broken frame"):
        list(prefetched(failing()))
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    before = threading.active_count()
    for i, x in enumerate(prefetched(endless(), depth=2)):
        if i == 5:
            break
    time.sleep(0.3)
    assert closed == [True] and threading.active_count() <= before


def test_frames_are_converted_on_one_scaler_thread_with_the_same_pixels(tmp_path):
    """PyAV >= 17's reformatter is multithreaded and, on automatic threads, starts and joins two threads
    for every frame (strace: 2 clone3 a frame); iter_frames asks for one thread where PyAV takes the
    option: the same pixels as the automatic conversion, frame by frame."""
    from directanimator import video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    path = tmp_path / "c.mp4"
    write_clip(path, frames)
    major = int(av.__version__.split(".")[0])
    assert video._ONE_SCALER_THREAD == ({"threads": 1} if major >= 17 else {})
    with av.open(str(path)) as c:
        auto = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    ours = list(iter_frames(path))
    assert len(ours) == len(auto) == 6 and all(np.array_equal(a, b) for a, b in zip(ours, auto))


@pytest.mark.parametrize("codec,rate,layout", [("pcm_u8", 11024, "mono"), ("pcm_s16le", 7000, "stereo"),
                                               ("pcm_f32le", 100000, "5.1"), ("pcm_u8", 22050, "3 channels")])
def test_any_sound_an_mp4_cannot_hold_is_resampled_to_aac(tmp_path, codec, rate, layout):
    """A webcam's 8-bit PCM at 11,024 Hz (AAC takes 11,025, not 11,024), rates AAC has no slot for,
    six and three channels (three with no layout name, only a count): the output keeps the sound as
    AAC at the nearest rate AAC takes at or above the source's, mono or stereo, as long as the video
    (one second, plus at most the encoder's two frames of priming and padding)."""
    from directanimator.video import VideoWriter

    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(10)]
    src = tmp_path / "webcam.avi"
    write_clip(src, frames, fps=10, audio=True, audio_codec=codec, audio_rate=rate, audio_layout=layout)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 10, 32, 32, audio_from=src) as w:
        for f in frames:
            w.write(f)
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        aac_rates = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
        assert a.codec_context.name == "aac" and a.rate == min(r for r in aac_rates if r >= min(rate, 96000))
        channels = 1 if layout == "mono" else 2
        assert a.layout.name == ("mono" if channels == 1 else "stereo")
        sound = np.concatenate([f.to_ndarray().ravel() for f in c.decode(a)])
    assert 0.9 * a.rate <= len(sound) / channels <= 1.05 * a.rate + 2048
    assert np.abs(sound).max() > 0.05  # the tone, not silence


def test_sound_that_cannot_be_kept_is_dropped_with_one_warning(tmp_path, monkeypatch, capsys):
    from directanimator import video

    def refuse(*_):
        raise av.error.ArgumentError(22, "avcodec_open2")

    monkeypatch.setattr(video, "_aac_stream", refuse)
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(5)]
    src = tmp_path / "webcam.avi"
    write_clip(src, frames, fps=10, audio=True, audio_codec="pcm_u8", audio_rate=11024)
    with video.VideoWriter(tmp_path / "out.mp4", 10, 32, 32, audio_from=src) as w:
        for f in frames:
            w.write(f)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the driving video's audio (pcm_u8) cannot be kept")
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert not c.streams.audio and c.streams.video[0].frames == 5
