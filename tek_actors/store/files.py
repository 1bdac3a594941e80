"""Atomic files: a reader sees the old file or the new one, never a torn one.

Temp file in the same folder, fsync, `os.replace`, fsync of the folder. An fsync failure is
raised (as JournalError, the disk's fault) and never retried: after a failed fsync the kernel
may have dropped the dirty pages, so a retry could report success for data that is gone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tek_actors.errors import JournalError

__all__ = ["fsync_dir", "remove_quietly", "write_atomic"]


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably, with file mode `mode`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise JournalError(f"cannot write {path} durably: {exc}") from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
