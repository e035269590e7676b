"""Small media made on the fly for tests."""

import av
import numpy as np


FORMATS = {"aac": "fltp", "pcm_u8": "u8", "pcm_s16le": "s16", "pcm_f32le": "flt"}


def write_clip(path, frames, fps=25, audio=False, video_codec="libx264", audio_codec="aac", audio_rate=16000,
               audio_layout="mono"):
    """Frames (H, W, 3) uint8 to a video; with `audio`, a 440 Hz tone of the same length in
    `audio_codec` (aac as float planar; pcm_u8 as 8-bit unsigned, e.g. a webcam AVI's sound; pcm_s16le,
    pcm_f32le) at `audio_rate` with `audio_layout` (a name, or a channel count)."""
    c = av.open(str(path), "w")
    s = c.add_stream(video_codec, rate=fps)
    s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    a = None
    if audio:
        a = c.add_stream(audio_codec, rate=audio_rate)
        a.layout = audio_layout
    for f in frames:
        for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    if a is not None:
        _write_tone(c, a, FORMATS[audio_codec], audio_rate, av.AudioLayout(audio_layout), len(frames) / fps)
    c.close()


def _write_tone(container, stream, fmt, rate, layout, seconds):
    n, ch = int(rate * seconds), len(layout.channels)
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    values = {"u8": (128 + 127 * tone).astype(np.uint8), "s16": (32767 * tone).astype(np.int16)}.get(
        fmt, tone.astype(np.float32))
    for i in range(0, n, 1024):
        part = values[i:i + 1024]
        planar = np.repeat(part[None], ch, axis=0) if fmt.endswith("p") else np.repeat(part, ch)[None]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format=fmt, layout=layout)
        af.sample_rate = rate
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def set_display_rotation(src, dst, clockwise_degrees=90):
    """Copy an mp4 with its track header's display matrix set to turn the picture by
    `clockwise_degrees` (90 or 270) when shown, as a phone writes a sideways recording. Patches the
    tkhd box's matrix in place (no re-encoding; the same as `ffmpeg -c copy -metadata:s:v rotate=`)."""
    import struct

    data = bytearray(open(src, "rb").read())
    i = data.find(b"tkhd")
    version = data[i + 4]
    start = i - 4
    width, height = struct.unpack(">II", data[start + 8 + 4 + (20 if version == 0 else 32) + 8 + 8 + 36:][:8])
    width, height = width >> 16, height >> 16
    one, neg = 0x10000, (-0x10000) & 0xFFFFFFFF
    if clockwise_degrees == 90:
        matrix = (0, one, 0, neg, 0, 0, height << 16, 0, 0x40000000)
    elif clockwise_degrees == 270:
        matrix = (0, neg, 0, one, 0, 0, 0, width << 16, 0x40000000)
    else:
        raise ValueError("90 or 270")
    off = start + 8 + 4 + (20 if version == 0 else 32) + 8 + 8
    data[off:off + 36] = struct.pack(">9I", *matrix)
    open(dst, "wb").write(bytes(data))


def puppet_driving_and_photo(folder, frames: int = 17):
    """A puppet driving video (`folder`/driving<frames>.mp4, 15 fps) and another puppet's photo
    (`folder`/reference.png), both 64 px: what the animate tests of trained runs take."""
    from pathlib import Path

    from directanimator.synth.render import render_clip
    from directanimator.video import save_image

    clip, ref = render_clip(906, 806, 706, frames, 64), render_clip(901, 801, 702, 1, 64)
    drv, photo = Path(folder) / f"driving{frames}.mp4", Path(folder) / "reference.png"
    write_clip(drv, list(clip.frames), fps=15, audio=False)
    save_image(photo, ref.frames[0])
    return drv, photo
