"""IDX files (the MNIST format), plain or gzipped, parsed with numpy alone.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions), one big-endian
uint32 per dimension, then the data, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from pcc.errors import DataError

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
"""IDX dtype code -> numpy dtype."""

FILES = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
"""The four files of an IDX dataset folder (each may also end in ``.gz``), keyed by :class:`Raw` field."""

_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def find_files(folder: str | Path, hint: str) -> dict[str, Path]:
    """The four IDX files in ``folder`` (plain or ``.gz``); a DataError naming the missing ones and ``hint``."""
    folder = Path(folder)
    found = {key: _find(folder, name) for key, name in FILES.items()}
    missing = [FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise DataError(f"IDX files not found in {folder}: {', '.join(missing)} (or .gz). {hint}")
    return found  # type: ignore[return-value]


def read(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file, in native byte order; a DataError naming the file if it is corrupt."""
    path = Path(path)
    try:
        with _open(path) as f:
            dtype, shape = _header(f, path)
            payload = f.read()
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read this IDX file ({e}); it is corrupt or truncated") from e
    expected = math.prod(shape) * dtype.itemsize
    if len(payload) != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: its header says shape {shape} ({expected} bytes of data) "
            f"but {len(payload)} bytes follow"
        )
    return np.frombuffer(payload, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def shape(path: str | Path) -> tuple[int, ...]:
    """The array shape in an IDX file's header, without reading its data."""
    path = Path(path)
    try:
        with _open(path) as f:
            return _header(f, path)[1]
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read this IDX file ({e}); it is corrupt or truncated") from e


def write(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends in ``.gz``); the inverse of :func:`read`."""
    code = next((c for c, dt in DTYPES.items() if np.dtype(dt).newbyteorder("=") == array.dtype), None)
    if code is None:
        raise ValueError(f"IDX has no dtype for {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with _open(Path(path), "wb") as f:
        f.write(header + array.astype(DTYPES[code]).tobytes())


def _find(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def _open(path: Path, mode: str = "rb") -> IO[bytes]:
    return gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)  # type: ignore[return-value]


def _header(f: IO[bytes], path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in DTYPES or magic[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {magic.hex() or 'empty'})")
    dims = f.read(4 * magic[3])
    if len(dims) != 4 * magic[3]:
        raise DataError(f"{path}: truncated IDX header")
    return np.dtype(DTYPES[magic[2]]), tuple(int(d) for d in np.frombuffer(dims, ">u4"))
