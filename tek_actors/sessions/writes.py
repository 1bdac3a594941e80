"""A tool's file write, done at most once: an intent in the session's journal first.

`write_once` opens the folder its plan bound (tools.py `Folder`: walked from `/` without
following a symlink, checked against the folder's identity) and checks the file against the
plan (the same file, or still no file for a new one), journals `effect.intended` (kind
`file.write`: the path, the size and SHA-256 of the content, append or not, the folder's
identity and the file's inode, size and mtime before; never the content), writes through a
temp file named after the intent, created in that folder fd (fsync, then a rename in the same
fd, then an fsync of the folder; an append is written and fsynced in place), and journals
`effect.settled`. A path that no longer resolves to what the plan bound fails the call, and
nothing is written. A session that starts with a write unsettled (`settle_unfinished_writes`,
from its on_begin) looks at the file, through the same folder walk: `done` if it holds the
content, `not_started` if it is exactly as it was before (the resumed call then writes it,
once), `unknown` otherwise (runtime/effects.py). Runs on the session actor's thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tek_actors.runtime.effects import intended, settled
from tek_actors.runtime.killpoints import kill_point
from tek_actors.sessions.tools import (
    ANY,
    Bound,
    Folder,
    PathChanged,
    PlannedCall,
    ToolError,
    identity,
    refused,
)

if TYPE_CHECKING:
    from tek_actors.sessions.session import ModelSessionActor

__all__ = ["UnknownOutcome", "settle_unfinished_writes", "write_once"]

# Where the filesystem cannot hard-link (some FUSE and FAT mounts), a new file is renamed into
# place after a last look instead: the only case where a name created in that instant is
# replaced (the rename replaces the entry itself and never follows it out of the folder).
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})


class UnknownOutcome(Exception):
    """Whether an effect happened cannot be told (runtime/effects.py): report, never re-run."""


def write_once(host: ModelSessionActor, key: str, planned: PlannedCall) -> dict[str, Any]:
    """Run a write_file call at most once under `key` (its approval): the intent is journaled
    first; asked again (after a restart), the first write's outcome. ToolError if it failed or
    its path changed since the plan (nothing was written); UnknownOutcome if whether it
    happened cannot be told."""
    known = host.state.intents.find(key)
    if known is None:
        intent_id = "w-" + uuid.uuid4().hex[:12]
        with open_folder(planned) as folder:
            spec = write_intent(planned, intent_id, folder)
            boot, now = host.ctx.journal.boot_id, host.ctx.clock.time()
            host.persist(intended(intent_id, "file.write", spec, key=key, boot=boot, at=now))
            kill_point("tools.write_intended")
            try:
                result = perform_write(planned, spec, folder)
            except ToolError as err:
                host.persist(settled(intent_id, "failed", {"error": str(err)}))
                raise
        kill_point("tools.written")
        host.persist(settled(intent_id, "done", result))
        known = host.state.intents.items[intent_id]
    if known.status == "done":
        return dict(known.outcome or {})
    raise UnknownOutcome((known.outcome or {}).get("reason") or "the write's outcome")


def settle_unfinished_writes(host: ModelSessionActor) -> None:
    """Settle, from the files, every write an earlier incarnation left without an outcome."""
    for intent in host.state.intents.pending():
        status, outcome = look_for_write(intent.spec)
        host.log.info("{}: the write of {} was {}", intent.id, intent.spec["path"], status)
        host.persist(settled(intent.id, status, outcome))  # type: ignore[arg-type]


def open_folder(planned: PlannedCall) -> Folder:
    """The folder a write_file plan bound, opened and checked (ToolError if it changed)."""
    args = planned.arguments
    try:
        return Folder.open(Path(args["path"]).parent, args.get("folder_inode", ANY))
    except PathChanged as changed:
        raise refused(planned.tool, changed) from changed
    except OSError as exc:
        raise ToolError(f"write_file {args['path']}: {exc.strerror or exc}") from exc


def write_intent(planned: PlannedCall, intent_id: str, folder: Folder) -> dict[str, Any]:
    """What a write_file call will do, as its intent records it: enough for a later boot to
    tell from the file whether it happened (runtime/effects.py). Never the content itself.
    ToolError if the file in `folder` is not the one the plan bound."""
    args = planned.arguments
    path = Path(args["path"])
    data = args["content"].encode()
    try:
        st = folder.check(path.name, args.get("inode", ANY))
    except PathChanged as changed:
        raise refused(planned.tool, changed) from changed
    except OSError as exc:
        raise ToolError(f"write_file {path}: {exc.strerror or exc}") from exc
    return {
        "path": str(path),
        "bytes": len(data),
        "digest": hashlib.sha256(data).hexdigest(),
        "append": args["append"],
        "folder_inode": identity(os.fstat(folder.fd)),
        "before": _file_state(st),
        "temp": str(path.with_name(f".{path.name}.{intent_id}.tmp")),
    }


def _file_state(st: os.stat_result | None) -> list[int] | None:
    """What identifies a file's content without reading it: inode, size, mtime (None: none)."""
    return None if st is None else [st.st_ino, st.st_size, st.st_mtime_ns]


def perform_write(planned: PlannedCall, intent: dict[str, Any], folder: Folder) -> dict[str, Any]:
    """Do the write its intent describes, in `folder`; ToolError on failure or if the file is
    no longer the one the plan bound (then nothing was changed)."""
    path = Path(intent["path"])
    data = planned.arguments["content"].encode()
    bound: Bound = planned.arguments.get("inode", ANY)
    try:
        if intent["append"]:
            _append(folder, path.name, data, bound)
        else:
            _replace(folder, path.name, data, Path(intent["temp"]).name, bound)
    except PathChanged as changed:
        raise refused(planned.tool, changed) from changed
    except OSError as exc:
        raise ToolError(f"write_file {path}: {exc.strerror or exc}") from exc
    return {"path": str(path), "bytes": len(data), "append": intent["append"]}


def look_for_write(intent: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Whether the write an intent describes happened, from the file alone (never through a
    symlink): `done`, `not_started` (the file is exactly as it was before), or `unknown` where
    the file cannot tell (it changed in another way, or its path no longer leads to it)."""
    path = Path(intent["path"])
    done = {"path": intent["path"], "bytes": intent["bytes"], "append": intent["append"]}
    start = intent["before"][1] if intent["append"] and intent["before"] else 0
    try:
        with Folder.open(path.parent, intent.get("folder_inode", ANY)) as folder:
            # written, never renamed into place: it never counts
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path(intent["temp"]).name, dir_fd=folder.fd)
            st = folder.lookup(path.name)
            if _file_state(st) == intent["before"]:
                return "not_started", None
            if st is None or st.st_size != start + intent["bytes"]:
                return "unknown", {"reason": f"{path} changed in another way since"}
            with os.fdopen(folder.open_file(path.name, os.O_RDONLY, ANY), "rb") as f:
                f.seek(start)
                written = f.read()
    except (OSError, ToolError) as exc:
        return "unknown", {"reason": f"{path}: {exc}"}
    if hashlib.sha256(written).hexdigest() == intent["digest"]:
        return "done", done
    return "unknown", {"reason": f"{path} changed in another way since"}


def _append(folder: Folder, name: str, data: bytes, bound: Bound) -> None:
    """Append to the bound file, or create it (O_EXCL: never through anything put there)."""
    st = folder.check(name, bound)
    if st is None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o644, dir_fd=folder.fd)
        except FileExistsError:
            folder.check(name, None)  # raises PathChanged: what is there now
            raise
    else:  # the file it looked at (an unbound plan binds that one)
        fd = folder.open_file(name, os.O_WRONLY | os.O_APPEND, identity(st))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if st is None:
        folder.sync()  # the new name, too


def _replace(folder: Folder, name: str, data: bytes, temp: str, bound: Bound) -> None:
    """Write a whole file so that a reader (or a crash) sees the old one or the new one: a temp
    file in `folder`, then, for a new file, a hard link (fails if anything took the name) or,
    for the bound file, a rename after a last look at it; then an fsync of the folder."""
    st = folder.check(name, bound)
    seen = identity(st) if st is not None else None  # an unbound plan binds what it saw
    mode = st.st_mode & 0o777 if st is not None else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600, dir_fd=folder.fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        if not (seen is None and _link_new(folder, temp, name)):
            # the last look: a file swapped in since the first is not replaced (the rename
            # replaces the name itself, never what a symlink there points to)
            folder.check(name, seen)
            os.replace(temp, name, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
        folder.sync()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder.fd)


def _link_new(folder: Folder, temp: str, name: str) -> bool:
    """Give the temp file its name only if nothing has it (True), the way O_EXCL creates; False
    where the filesystem has no hard links. PathChanged if something took the name."""
    try:
        os.link(temp, name, src_dir_fd=folder.fd, dst_dir_fd=folder.fd, follow_symlinks=False)
    except FileExistsError:
        folder.check(name, None)  # raises PathChanged: what is there now
        raise
    except OSError as exc:
        if exc.errno in _NO_LINKS:
            return False
        raise
    return True
