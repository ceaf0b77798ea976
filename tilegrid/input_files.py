"""Reading a user's .npz inputs: sized and typed from the archive's own
directory and array headers before a single data byte is decompressed.

An .npz is a zip of .npy members. The zip directory states each member's
uncompressed size and each .npy header states its shape and dtype, so a
zip bomb, a header that claims 40 GB, a device such as /dev/zero or a pickle
is refused with one message, without reading what it claims to hold.
"""
from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import UserError

NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
SAVE_HINT = "save inputs with np.savez('inputs.npz', A=..., B=...)"


@dataclass(frozen=True)
class ArrayHeader:
    name: str
    shape: tuple
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def _open_archive(path: str) -> zipfile.ZipFile:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"inputs file '{path}' does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"'{path}' is not a regular file; {SAVE_HINT}")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror}") from None
    if magic == b"\x93NUMPY":
        raise UserError(f"'{path}' is a .npy file and holds one array; {SAVE_HINT}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UserError(f"'{path}' is not a readable .npz file: it is not a zip archive ({exc}); "
                        f"{SAVE_HINT}") from None


def _member_header(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[ArrayHeader, int]:
    """The array header of one member and the header's length in bytes."""
    name = info.filename[:-4]
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            reader = NPY_HEADER_READERS.get(version)
            if reader is None:
                raise UserError(f"'{path}': array '{name}' uses .npy format {version}, which tilegrid does not read")
            shape, fortran_order, dtype = reader(f)
            return ArrayHeader(name, tuple(shape), dtype, fortran_order), f.tell()
    except UserError:
        raise
    except Exception as exc:  # zip, zlib or header trouble: one message
        raise UserError(f"'{path}' is not a readable .npz file (array '{name}': {exc})") from None


def read_headers(path: str) -> dict[str, ArrayHeader]:
    """Shape and dtype of every array, from headers only."""
    with _open_archive(path) as archive:
        return {h.name: h for h, _ in _checked_members(path, archive)}


def _checked_members(path: str, archive: zipfile.ZipFile):
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise UserError(f"'{path}' holds '{info.filename}', which is not an array (.npy); {SAVE_HINT}")
        header, header_len = _member_header(path, archive, info)
        if header.dtype.hasobject:
            raise UserError(f"'{path}': array '{header.name}' holds Python objects; tilegrid never loads "
                            "pickles")
        if header_len + header.nbytes != info.file_size:
            raise UserError(f"'{path}' is corrupt: array '{header.name}' claims shape {header.shape} "
                            f"({header.nbytes} bytes) but its archive entry holds {info.file_size} bytes")
        yield header, info


def load_npz(path: str, max_bytes: int, room: str = "") -> dict[str, np.ndarray]:
    """Every array of the archive, refusing before decompression when together
    they exceed max_bytes (room says what bounds it, for the message)."""
    with _open_archive(path) as archive:
        members = list(_checked_members(path, archive))
        total = sum(h.nbytes for h, _ in members)
        if total > max_bytes:
            raise UserError(f"'{path}' holds {_size(total)} of arrays; {room or 'the limit is'} "
                            f"{_size(max_bytes)}, so they cannot be loaded")
        arrays = {}
        for header, info in members:
            if header.dtype != np.float32:
                raise UserError(f"input '{header.name}' has dtype {header.dtype}; kernels take float32 "
                                "(convert with .astype(np.float32))")
            try:
                with archive.open(info) as f:
                    arrays[header.name] = np.lib.format.read_array(f, allow_pickle=False)
            except Exception as exc:
                raise UserError(f"'{path}' is not a readable .npz file (array '{header.name}': {exc})") from None
        return arrays


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def write_npz(path: str, arrays: dict) -> None:
    """Write exactly to `path` (np.savez given a name would append '.npz')."""
    try:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as exc:
        raise UserError(f"cannot write '{path}': {exc.strerror or exc}") from None
