"""Atomic outputs and a streaming safetensors writer.

`safetensors.numpy.save_file` needs every array in memory at once; a cue file for a long video
does not fit that. The format is simple (8-byte little-endian header length, a JSON header with
dtype/shape/offsets, then the raw bytes), so `StreamingSafetensorsWriter` appends frames of each
tensor to its own spool file and writes header + data at the end; when the number of frames is known
before the first one (`preallocate`: the cue job's second pass, after the first pass counted them),
each frame goes straight to its place in the final file instead, and no spool is copied. Files it
writes load with the safetensors library (tests check this). Everything here writes under a temporary
name and renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import InputError

_DTYPES = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
           np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.bool_): "BOOL"}


class StreamingSafetensorsWriter:
    """Append along the first axis of named tensors; `close()` assembles one .safetensors file.

    Two ways: by default each streamed tensor is spooled to its own file and `close()` copies the
    spools behind the header. After `preallocate(count, examples)` (every streamed tensor's frame known,
    and how many frames will come) the layout is fixed at once: the final `.partial` file is sized,
    each frame is written at its own offset, and `close()` only writes the header into the room kept
    for it (`HEADER_ROOM` bytes more than the header without metadata) and renames. With fewer frames
    than announced, or metadata too long for that room, `close()` falls back to copying the used parts
    into a new file: the result is the same file either way."""

    HEADER_ROOM = 16384

    def __init__(self, path: str | Path, spool_dir: str | Path):
        self.path = Path(path)
        self._spool = Path(spool_dir)
        self._files: dict[str, object] = {}
        self._meta: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
        self._whole: dict[str, np.ndarray] = {}
        # the preallocated .partial file (a file object, so that a writer dropped half way is closed
        # like the spool files are)
        self._file = None
        self._reserved = 0  # frames announced to preallocate
        self._offsets: dict[str, int] = {}  # name -> absolute offset of its first byte in the file
        self._data_start = 0

    @property
    def _partial(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    def preallocate(self, count: int, examples: dict[str, np.ndarray]) -> None:
        """Fix the layout before the first `append`: `count` frames of each tensor in `examples` (one
        frame each, giving dtype and shape); `put` tensors must be given before this."""
        if self._meta or self._file is not None:
            raise RuntimeError("preallocate must come before the first append")
        for name, frame in examples.items():
            frame = np.asarray(frame)
            if frame.dtype not in _DTYPES:
                raise TypeError(f"dtype {frame.dtype} not supported")
            self._meta[name] = (frame.dtype, frame.shape, 0)
        self._reserved = int(count)
        header, nbytes = self._header(self._reserved)
        self._data_start = 8 + len(self._encode(header)) + self.HEADER_ROOM
        self._file = open(self._partial, "w+b", buffering=0)
        fd = self._file.fileno()
        os.ftruncate(fd, self._data_start + nbytes)
        for name, entry in header.items():
            self._offsets[name] = self._data_start + entry["data_offsets"][0]
            if name in self._whole:
                os.pwrite(fd, memoryview(self._whole[name]).cast("B"), self._offsets[name])

    def append(self, name: str, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame)
        if self._file is not None:
            if name not in self._meta:
                raise ValueError(f"{name}: not in the preallocated layout")
            dtype, shape, count = self._meta[name]
            if frame.dtype != dtype or frame.shape != shape:
                raise ValueError(f"{name}: frame {frame.dtype}{frame.shape} differs from {dtype}{shape}")
            if count >= self._reserved:
                raise ValueError(f"{name}: more than the {self._reserved} frames preallocated")
            os.pwrite(self._file.fileno(), memoryview(frame).cast("B"), self._offsets[name] + count * frame.nbytes)
            self._meta[name] = (dtype, shape, count + 1)
            return
        if name not in self._files:
            if frame.dtype not in _DTYPES:
                raise TypeError(f"dtype {frame.dtype} not supported")
            self._files[name] = open(self._spool / f"{name}.raw", "wb")
            self._meta[name] = (frame.dtype, frame.shape, 0)
        dtype, shape, count = self._meta[name]
        if frame.dtype != dtype or frame.shape != shape:
            raise ValueError(f"{name}: frame {frame.dtype}{frame.shape} differs from {dtype}{shape}")
        self._files[name].write(frame.tobytes())  # type: ignore[attr-defined]
        self._meta[name] = (dtype, shape, count + 1)

    def put(self, name: str, array: np.ndarray) -> None:
        """A small tensor written whole (e.g. the reference image)."""
        if self._file is not None:
            raise RuntimeError("put must come before preallocate")
        self._whole[name] = np.ascontiguousarray(array)

    def _header(self, frames: int | None = None) -> tuple[dict, int]:
        """The header's tensor entries (sorted by name) and the data's size; `frames` replaces every
        streamed tensor's own count."""
        header: dict[str, dict] = {}
        offset = 0
        for name in sorted(set(self._meta) | set(self._whole)):
            if name in self._whole:
                arr = self._whole[name]
                dtype, shape, nbytes = arr.dtype, list(arr.shape), arr.nbytes
            else:
                dtype, frame_shape, count = self._meta[name]
                count = count if frames is None else frames
                shape = [count, *frame_shape]
                nbytes = count * int(np.prod(frame_shape, dtype=np.int64)) * dtype.itemsize
            header[name] = {"dtype": _DTYPES[np.dtype(dtype)], "shape": shape,
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        return header, offset

    @staticmethod
    def _encode(header: dict, metadata: dict[str, str] | None = None, room: int = 0) -> bytes:
        """The JSON header, padded with spaces (as the format allows) to a multiple of 8, or to
        exactly `room` bytes when given."""
        if metadata:
            header = dict(header, __metadata__={k: str(v) for k, v in metadata.items()})
        blob = json.dumps(header, separators=(",", ":")).encode()
        return blob + b" " * ((room - len(blob)) if room else (-len(blob) % 8))

    def close(self, metadata: dict[str, str] | None = None) -> None:
        if self._file is not None:
            self._close_preallocated(metadata)
            return
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        header, _ = self._header()
        blob = self._encode(header, metadata)
        tmp = self._partial
        with open(tmp, "wb") as out:
            out.write(len(blob).to_bytes(8, "little"))
            out.write(blob)
            for name in header:
                if name in self._whole:
                    out.write(self._whole[name].tobytes())
                else:
                    src = self._spool / f"{name}.raw"
                    append_file(src, out)
                    os.remove(src)
        os.replace(tmp, self.path)

    def _close_preallocated(self, metadata: dict[str, str] | None) -> None:
        file, self._file = self._file, None
        assert file is not None
        with file:
            fd = file.fileno()
            header, _ = self._header()
            room = self._data_start - 8
            blob = self._encode(header, metadata)
            complete = all(c == self._reserved for _, _, c in self._meta.values())
            if complete and len(blob) <= room:
                blob = self._encode(header, metadata, room)
                os.pwrite(fd, len(blob).to_bytes(8, "little") + blob, 0)
                compact = None
            else:  # fewer frames than announced, or long metadata: the used parts into a new file
                compact = self.path.with_name(self.path.name + ".compact.partial")
                with open(compact, "wb") as out:
                    out.write(len(blob).to_bytes(8, "little"))
                    out.write(blob)
                    for name, entry in header.items():
                        size = entry["data_offsets"][1] - entry["data_offsets"][0]
                        for at in range(0, size, 1 << 24):  # in chunks, not all in memory
                            out.write(os.pread(fd, min(1 << 24, size - at), self._offsets[name] + at))
        if compact is None:
            os.replace(self._partial, self.path)
        else:
            os.remove(self._partial)
            os.replace(compact, self.path)


def append_file(src: str | Path, out) -> None:
    """Append the file `src` to the open binary file `out`, in the kernel (`copy_file_range`: about 10x
    less time than a copy through Python's buffers on a cold page cache, measured by
    benchmarks/cues.py), through Python's buffers where the kernel cannot."""
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        out.flush()
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(f.fileno(), out.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except (AttributeError, OSError):  # no copy_file_range here, or not between these files
            pass
        out.seek(0, os.SEEK_END)
        if done < size:
            f.seek(done)
            shutil.copyfileobj(f, out, 1 << 22)


MARKER = ".directanimator-output"


def check_writable_parent(path: str | Path) -> None:
    """Before any compute: the folder that will hold `path` can be created and written to (a probe
    file is made and removed), so a bad --out fails at once with one line, not after the work."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".directanimator-probe-", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise InputError(f"cannot write to {parent}: {exc.strerror or exc}") from None


def check_output_file(path: str | Path, overwrite: bool = True) -> None:
    """`path` is to be written as a file: not a folder, its folder writable, and (unless
    `overwrite`) not there yet."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a folder; give a file name (e.g. {path / 'report.json'})")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    check_writable_parent(path)


@contextmanager
def atomic_output_dir(final: str | Path, overwrite: bool = False, known: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final`, on error it is
    removed and `final` is untouched. The folder gets a marker file, and `overwrite` replaces only a
    folder that has it (or, written before markers existed, holds nothing but the `known` names):
    never an unrelated folder someone passed by mistake."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise InputError(f"output path exists and is not a folder: {final}")
    if final.exists() and any(final.iterdir()):
        if not overwrite:
            raise InputError(f"output folder {final} is not empty; pass --overwrite to replace it")
        names = {p.name for p in final.iterdir()}
        if MARKER not in names and not (known and names <= set(known)):
            raise InputError(f"--overwrite replaces only a folder this tool wrote, and {final} was not (no {MARKER} "
                             f"file; it holds e.g. {sorted(names - set(known))[0]}): remove it yourself or choose "
                             f"another output")
    check_writable_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    (tmp / MARKER).write_text("written by directanimator; --overwrite may replace this folder\n")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


WORK_PREFIX = ".directanimator-"


def work_dir(parent: str | Path) -> tempfile.TemporaryDirectory:
    """A hidden working folder in `parent` (`.directanimator-PID-*`, removed when done). A run that
    was killed cannot remove its own: such folders of processes no longer running are removed first.
    `parent` is made when missing."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    remove_stale_work_dirs(parent)
    return tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=parent)


def remove_stale_work_dirs(parent: str | Path) -> list[Path]:
    """Remove the working folders in `parent` whose process has ended; returns them."""
    removed = []
    for d in Path(parent).glob(WORK_PREFIX + "*"):
        pid = d.name[len(WORK_PREFIX):].split("-")[0]
        if d.is_dir() and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` writes the file at a temporary name beside `path` (unique per process, the same
    extension, so writers that pick a format by extension still work), which is then renamed to
    `path`: readers see the old file or the whole new one, never a half-written one. On failure the
    temporary file is removed and the error raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    # unique per process: two processes writing the same file (two `preprocess` runs on one dataset)
    # must not rename each other's temporary file away; the last rename wins, whole
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
