"""Reading kernel sources from disk: bounded, and only from regular text files.

A kernel path or an `import` can name anything: a device that never ends
(/dev/zero), a binary, a huge file. Each is refused with one message before
more than MAX_SOURCE_BYTES are read.
"""
from __future__ import annotations

import os
import stat

MAX_SOURCE_BYTES = 4 * 1024 * 1024


class SourceFileError(Exception):
    """A kernel file that cannot be used; the message names it and why."""


def read_source_file(path) -> str:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SourceFileError(f"'{path}' does not exist") from None
    except OSError as exc:
        raise SourceFileError(f"cannot read '{path}': {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceFileError(f"'{path}' is a directory, not a kernel file")
    if not stat.S_ISREG(info.st_mode):
        raise SourceFileError(f"'{path}' is not a regular file")
    if info.st_size > MAX_SOURCE_BYTES:
        raise SourceFileError(f"'{path}' is {info.st_size} bytes; kernel files are at most {MAX_SOURCE_BYTES}")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise SourceFileError(f"cannot read '{path}': {exc.strerror}") from None
    if len(data) > MAX_SOURCE_BYTES:  # grew while we looked
        raise SourceFileError(f"'{path}' is larger than {MAX_SOURCE_BYTES} bytes")
    if b"\0" in data:
        raise SourceFileError(f"'{path}' is a binary file, not kernel source")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"'{path}' is not UTF-8 text (byte {exc.start})") from None
