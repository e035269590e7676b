"""Streaming video and image I/O (PyAV, OpenCV).

Frames are read and written one at a time, never held all in memory. Every frame is letterboxed
into a square working size; the `Letterbox` transform is recorded so any result (a box, a mask, a
keypoint) maps back to source pixels. Audio is carried over by stream copy, never re-encoded.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Letterbox:
    """Source (src_w x src_h) scaled by `scale` and padded by (pad_x, pad_y) into size x size."""

    src_w: int
    src_h: int
    size: int
    scale: float
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, src_w: int, src_h: int, size: int) -> "Letterbox":
        scale = size / max(src_w, src_h)
        new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        return cls(src_w, src_h, size, scale, (size - new_w) // 2, (size - new_h) // 2)

    @property
    def inner(self) -> tuple[int, int]:
        """(width, height) of the resized source inside the square."""
        return max(1, round(self.src_w * self.scale)), max(1, round(self.src_h * self.scale))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) or (H, W) source image -> (size, size[, C]) letterboxed, zero padding."""
        w, h = self.inner
        interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (w, h), interpolation=interp)
        out = np.zeros((self.size, self.size) + image.shape[2:], image.dtype)
        out[self.pad_y : self.pad_y + h, self.pad_x : self.pad_x + w] = resized
        return out

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Points (..., 2) in working coordinates -> source pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        return (xy - np.array([self.pad_x, self.pad_y])) / self.scale

    def as_dict(self) -> dict:
        return {"src_w": self.src_w, "src_h": self.src_h, "size": self.size, "scale": self.scale,
                "pad_x": self.pad_x, "pad_y": self.pad_y}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    fps_fraction: Fraction
    num_frames: int  # from the container header; 0 when the container does not say
    has_audio: bool
    variable_frame_rate: bool
    # display rotation from the container (a phone's sideways recording), degrees counter-clockwise
    # as FFmpeg reports it; frames are turned upright when read, and width/height are the upright ones
    rotation: int = 0


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"expected a video file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"video file is empty (0 bytes): {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read video {path}: not a video or corrupt ({exc.__class__.__name__})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"no video stream in {path}")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Read the header and the packet timestamps of a video (and decode its first frame, for the
    display rotation only)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        # Timestamps of the first packets tell a variable frame rate apart from a constant one.
        pts = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    pts.append(packet.pts)
                if len(pts) >= 120:
                    break
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot read video {path}: corrupt ({exc.__class__.__name__})") from None
        deltas = np.diff(np.sort(np.array(pts, dtype=np.int64))) if len(pts) > 2 else np.array([1])
        deltas = deltas[deltas > 0]
        # Constant-rate files differ by a tick of rounding at most; VFR ones by much more.
        vfr = bool(len(deltas) and deltas.max() > 1.25 * deltas.min() and deltas.max() - deltas.min() > 2)
        width, height = stream.codec_context.width, stream.codec_context.height
        has_audio, frames = bool(container.streams.audio), int(stream.frames or 0)
    rotation = _first_frame_rotation(path)
    if rotation % 180:
        width, height = height, width
    return VideoInfo(path=path, width=width, height=height, fps=float(rate), fps_fraction=Fraction(rate),
                     num_frames=frames, has_audio=has_audio, variable_frame_rate=vfr, rotation=rotation)


def _first_frame_rotation(path: Path) -> int:
    """The display rotation (degrees, a multiple of 90) of the first decoded frame; 0 if none."""
    try:
        with _open(path) as container:
            for frame in container.decode(video=0):
                return _rotation(frame)
    except (av.error.FFmpegError, InputError):
        return 0
    return 0


def _rotation(frame) -> int:
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360


def _scaler_threads_option() -> dict:
    """{"threads": 1} where PyAV's conversion takes it (PyAV 17 made the scaler multithreaded: it then
    starts and joins two threads for every frame, seen with strace; one thread gives the same pixels in
    less time, BENCHMARKS.md); {} for older PyAV, single-threaded anyway. Asked of PyAV itself, on a
    tiny frame, since its Cython methods carry no signature to inspect."""
    try:
        av.VideoFrame(16, 16, "yuv420p").to_ndarray(format="rgb24", threads=1)
    except TypeError:
        return {}
    return {"threads": 1}


_ONE_SCALER_THREAD = _scaler_threads_option()


def _upright(frame) -> np.ndarray:
    """A decoded frame as (H, W, 3) RGB, turned as its display matrix says (phones store sideways)."""
    rgb = frame.to_ndarray(format="rgb24", **_ONE_SCALER_THREAD)
    k = _rotation(frame) // 90
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video as (H, W, 3) uint8 RGB, one at a time, in display order."""
    path = Path(path)
    container = _open(path)
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield _upright(frame)
            index += 1
    except av.error.FFmpegError as exc:
        if index == 0:
            raise InputError(f"cannot decode video {path}: corrupt ({exc.__class__.__name__})") from None
        raise InputError(f"video {path} is corrupt after frame {index} ({exc.__class__.__name__})") from None
    finally:
        container.close()


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB. Grayscale is expanded; alpha is composited on black."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f"cannot decode image {path}: not an image or corrupt")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = cv2.cvtColor((image[:, :, :3] * alpha).astype(np.uint8), cv2.COLOR_BGR2RGB)
    else:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(apply_exif_orientation(image, exif_orientation(path)))


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag (1-8) of a photo, 1 when it has none (phones store photos sideways
    and say how to turn them)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - no EXIF, or a format PIL does not read: as stored
        return 1
    return value if 1 <= value <= 8 else 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image (H, W, C) the way its EXIF orientation says it is to be shown."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.transpose(1, 0, 2), 6: lambda x: np.rot90(x, -1), 7: lambda x: np.rot90(x.transpose(1, 0, 2), 2),
           8: lambda x: np.rot90(x, 1)}
    return ops[orientation](image) if orientation in ops else image


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(Path(path).suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode image {path}")
    Path(path).write_bytes(buf.tobytes())


# audio codecs an mp4 holds as they are (stream copy); anything else is re-encoded to AAC
MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus"})


def _aac_stream(container, source) -> tuple:
    """An AAC stream for `source`'s sound (any rate, sample format and channel layout) and the
    resampler that brings its frames there: the nearest rate AAC takes at or above the source's
    (11,024 Hz -> 11,025), mono or stereo. The encoder is opened once on its own first, so that a
    setting it refuses raises here, before the stream is added (an added stream that cannot open
    would fail the whole file at its first packet)."""
    rates = sorted(av.codec.Codec("aac", "w").audio_rates or (48000,))
    rate = next((r for r in rates if r >= (source.sample_rate or 48000)), rates[-1])
    channels = getattr(source, "channels", 0) or len(source.layout.channels) or 2
    layout = "mono" if channels == 1 else "stereo"
    probe = av.CodecContext.create("aac", "w")
    probe.sample_rate, probe.layout, probe.format = rate, layout, "fltp"
    probe.open()
    stream = container.add_stream("aac", rate=rate, layout=layout)
    return stream, av.AudioResampler(format="fltp", layout=layout, rate=rate)


class VideoWriter:
    """Write (H, W, 3) uint8 RGB or (H, W) gray frames to an H.264 mp4, one at a time.

    `audio_from`, when given, is a video whose audio stream is stream-copied into the output on
    close (the output then keeps the source's sound on the same timeline); a codec an mp4 cannot
    hold (PCM from a webcam AVI, ...) is re-encoded to AAC, and if even that fails the video is
    written without sound and a warning line says so.
    """

    def __init__(self, path: str | Path, fps: Fraction | float, width: int, height: int,
                 crf: int = 20, preset: str = "ultrafast", audio_from: str | Path | None = None):
        self.path = Path(path)
        self._audio_from = Path(audio_from) if audio_from else None
        self._container = av.open(str(self.path), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset, "tune": "zerolatency"}
        self._audio_in = None
        self._audio_out = None
        self._resampler = None
        self._transcode = False
        if self._audio_from is not None:
            self._audio_in = av.open(str(self._audio_from))
            if self._audio_in.streams.audio:
                src = self._audio_in.streams.audio[0]
                try:
                    if src.codec_context.name in MP4_AUDIO:
                        self._audio_out = self._container.add_stream_from_template(src)
                    else:  # e.g. a webcam's 8-bit PCM: an mp4 cannot hold it, AAC can
                        self._audio_out, self._resampler = _aac_stream(self._container, src.codec_context)
                        self._transcode = True
                except Exception as exc:  # noqa: BLE001 - never lose the video for its sound
                    self._audio_out = None
                    print(f"warning: the driving video's audio ({src.codec_context.name}) cannot be kept "
                          f"({exc.__class__.__name__}); writing the video without sound", file=sys.stderr)
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        h, w = frame.shape[:2]
        if (w, h) != (self._stream.width, self._stream.height):
            frame = np.pad(frame, ((0, self._stream.height - h), (0, self._stream.width - w), (0, 0)))
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        if self._audio_out is not None and self._audio_in is not None:
            audio_in = self._audio_in.streams.audio[0]
            # Copy only the audio that falls inside the video's duration.
            end = self.frames_written / float(self._stream.average_rate or self._stream.rate)
            try:
                self._copy_audio(audio_in, end)
            except Exception as exc:  # noqa: BLE001 - never lose the video for its sound
                print(f"warning: the driving video's audio could not be written ({exc.__class__.__name__}); "
                      f"the video may have no or partial sound", file=sys.stderr)
        if self._audio_in is not None:
            self._audio_in.close()
        self._container.close()

    def _copy_audio(self, audio_in, end: float) -> None:
        """The source's audio inside [0, end) seconds: packets copied, or decoded and re-encoded
        to AAC when the mp4 cannot hold the source codec."""
        for packet in self._audio_in.demux(audio_in):
            if packet.dts is None:
                continue
            if packet.pts is not None and float(packet.pts * audio_in.time_base) >= end:
                break
            if not self._transcode:
                packet.stream = self._audio_out
                self._container.mux(packet)
                continue
            for frame in packet.decode():
                self._encode_audio(self._resampler.resample(frame))
        if self._transcode:
            self._encode_audio(self._resampler.resample(None))
            for out in self._audio_out.encode(None):
                self._container.mux(out)

    def _encode_audio(self, frames) -> None:
        for frame in frames:
            frame.pts = None
            for out in self._audio_out.encode(frame):
                self._container.mux(out)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
