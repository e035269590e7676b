"""Atomic outputs and a streaming safetensors writer.

`safetensors.numpy.save_file` needs every array in memory at once; a cue file for a long video
does not fit that. The format is simple (8-byte little-endian header length, a JSON header with
dtype/shape/offsets, then the raw bytes), so `StreamingSafetensorsWriter` appends frames of each
tensor to its own spool file and writes header + data at the end. Files it writes load with the
safetensors library (tests check this). Everything here writes under a temporary name and renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError

_DTYPES = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
           np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.bool_): "BOOL"}


class StreamingSafetensorsWriter:
    """Append along the first axis of named tensors; `close()` assembles one .safetensors file."""

    def __init__(self, path: str | Path, spool_dir: str | Path):
        self.path = Path(path)
        self._spool = Path(spool_dir)
        self._files: dict[str, object] = {}
        self._meta: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
        self._whole: dict[str, np.ndarray] = {}

    def append(self, name: str, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame)
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
        self._whole[name] = np.ascontiguousarray(array)

    def close(self, metadata: dict[str, str] | None = None) -> None:
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        header: dict[str, object] = {}
        offset = 0
        order: list[tuple[str, Path | np.ndarray]] = []
        for name in sorted(set(self._meta) | set(self._whole)):
            if name in self._whole:
                arr = self._whole[name]
                dtype, shape, nbytes = arr.dtype, list(arr.shape), arr.nbytes
                order.append((name, arr))
            else:
                dtype, frame_shape, count = self._meta[name]
                shape = [count, *frame_shape]
                nbytes = count * int(np.prod(frame_shape, dtype=np.int64)) * dtype.itemsize
                order.append((name, self._spool / f"{name}.raw"))
            header[name] = {"dtype": _DTYPES[np.dtype(dtype)], "shape": shape,
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        if metadata:
            header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        tmp = self.path.with_name(self.path.name + ".partial")
        with open(tmp, "wb") as out:
            out.write(len(blob).to_bytes(8, "little"))
            out.write(blob)
            for _, src in order:
                if isinstance(src, np.ndarray):
                    out.write(src.tobytes())
                else:
                    with open(src, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
                    os.remove(src)
        os.replace(tmp, self.path)


@contextmanager
def atomic_output_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final`, on error it is
    removed and `final` is untouched."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise InputError(f"output path exists and is not a folder: {final}")
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise InputError(f"output folder {final} is not empty; pass --overwrite to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
