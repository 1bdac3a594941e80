"""Files on disk: atomic writes, what it means when the disk refuses one, and giving space back.

A reader sees the old file or the new one, never a torn one: temp file in the same folder,
fsync, `os.replace`, fsync of the folder. A disk that refuses before the replace (full,
read-only, not ours to write) leaves the file as it was: that is `StorageUnavailable`, which
a caller can answer and go on from. Any other failure, and any failure after the replace, is
`JournalError` and never retried: after a failed fsync the kernel may have dropped the dirty
pages, so a retry could report success for data that is gone.

The same split for SQLite files (`sqlite_refusal`): SQLITE_FULL, and a write refused by a
read-only disk, roll the transaction back whole; nothing else is known to have written nothing.
A SQLite file gives freed pages back to the disk once it is `auto_vacuum=INCREMENTAL`
(`make_incremental`) and a transaction that deletes calls `give_back_free_pages`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from loguru import logger

from tek_actors.errors import JournalError, StorageUnavailable

__all__ = [
    "WAL_KEPT_BYTES",
    "create_private",
    "fsync_dir",
    "give_back_free_pages",
    "make_incremental",
    "refusal",
    "remove_quietly",
    "rolled_back",
    "sqlite_refusal",
    "unwritable",
    "write_atomic",
]

WAL_KEPT_BYTES = 8 << 20  # a WAL is cut back to this after a checkpoint (it runs at 4 MiB)
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_IOERR = 13, 8, 14, 10
_SQLITE_IOERR_WRITE = 778


def refusal(exc: OSError, folder: Path, what: str, then: str) -> StorageUnavailable | None:
    """`exc` as the refusal of the disk holding `folder` (full, read-only), or None when it is
    something else (an I/O error: the disk failed, and nobody can know what it kept). `what`
    says what was left undone, `then` what the person does after freeing space."""
    if exc.errno in _DISK_FULL:
        return StorageUnavailable.refused("disk_full", str(folder), what, then)
    if exc.errno in _READ_ONLY:
        return StorageUnavailable.refused("read_only", str(folder), what, then)
    return None


def unwritable(*paths: Path) -> bool:
    """True if one of `paths` that exists cannot be written now (read-only mount, or not the
    gateway's to write). Used to tell what an error without an errno (SQLite's) was about."""
    return any(p.exists() and not os.access(p, os.W_OK) for p in paths)


def create_private(path: Path, what: str, then: str) -> bool:
    """Create `path` (mode 0600) and its folder (0700) unless they exist; True if it was
    created. StorageUnavailable if the disk refuses, JournalError for any other failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            return False
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    except OSError as exc:
        refused = refusal(exc, path.parent, what, then)
        raise refused or JournalError(f"cannot create {path}: {exc}") from exc
    return True


def sqlite_refusal(
    exc: BaseException, db: Path, what: str, then: str, *, opening: bool = False
) -> StorageUnavailable | None:
    """`exc`, raised by SQLite on database `db`, as a full or read-only disk's refusal, or
    None. SQLite keeps the errno to itself: a read-only error counts only if one of the files
    (or the folder) cannot be written now. `opening`: nothing was being written yet, so any
    I/O error on a disk with no space left (the -shm file cannot grow) is that."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return None
    if code & 0xFF == _SQLITE_FULL or (
        opening and code & 0xFF == _SQLITE_IOERR and os.statvfs(db.parent).f_bavail == 0
    ):
        return StorageUnavailable.refused("disk_full", str(db.parent), what, then)
    ours = (db.parent, db, Path(f"{db}-wal"), Path(f"{db}-shm"))
    known = code & 0xFF in (_SQLITE_READONLY, _SQLITE_CANTOPEN) or code == _SQLITE_IOERR_WRITE
    if known and unwritable(*ours):
        return StorageUnavailable.refused("read_only", str(db.parent), what, then)
    return None


def rolled_back(conn: sqlite3.Connection) -> bool:
    """Roll back what a refused transaction left open; False if even that failed."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        return False
    return not conn.in_transaction


def make_incremental(conn: sqlite3.Connection, db: Path) -> bool:
    """Make database `db` `auto_vacuum=INCREMENTAL` (`conn` must have asked for it before it
    chose its journal mode); True once it is. A file made without it needs one VACUUM, which
    rewrites it (measured: 0.1 s for a 71 MiB journal 83% free, about 1 s for one with nothing
    free; docs/operations.md); a disk without room for that leaves it as it was until the
    next open."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    if mode == 2:
        return True
    size, started = db.stat().st_size, time.monotonic()
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        logger.warning("{} keeps its free pages until it can be rewritten: {}", db, exc)
        return False
    logger.info(
        "{} now gives freed pages back: {:.1f} MiB -> {:.1f} MiB in {:.2f} s (once)",
        db,
        size / 2**20,
        db.stat().st_size / 2**20,
        time.monotonic() - started,
    )
    return True


def give_back_free_pages(cur: sqlite3.Cursor) -> None:
    """In the current transaction, cut the free pages off the end of the file (it shrinks at
    the next checkpoint). Python's sqlite3 steps this pragma once per execute, a page a step,
    so it is run until the free list is empty or stops shrinking."""
    (free,) = cur.execute("PRAGMA freelist_count").fetchone()
    while free:
        cur.execute("PRAGMA incremental_vacuum").fetchall()
        (left,) = cur.execute("PRAGMA freelist_count").fetchone()
        if left >= free:
            return
        free = left


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably, with file mode `mode`.

    Raises StorageUnavailable if the disk refused before the replace (`path` unchanged), and
    JournalError for anything else."""
    path = Path(path)
    then = "then send it again (no restart needed)"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _refused_or_failed(exc, path, then) from exc
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
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _refused_or_failed(exc, path, then) from exc
    try:
        fsync_dir(path.parent)
    except OSError as exc:  # the rename happened; whether it is durable nobody can say
        raise JournalError(f"cannot write {path} durably: {exc}") from exc


def _refused_or_failed(exc: OSError, path: Path, then: str) -> StorageUnavailable | JournalError:
    refused = refusal(exc, path.parent, f"{path.name} was not written, so nothing changed", then)
    return refused or JournalError(f"cannot write {path} durably: {exc}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
