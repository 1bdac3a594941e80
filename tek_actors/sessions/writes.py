"""A tool's file write, done at most once: an intent in the session's journal first.

`write_once` journals `effect.intended` (kind `file.write`: the path, the size and SHA-256 of
the content, append or not, and the file's inode, size and mtime before; never the content),
writes through a temp file named after the intent (fsync, rename; an append is written and
fsynced in place), and journals `effect.settled`. A session that starts with a write unsettled
(`settle_unfinished_writes`, from its on_begin) looks at the file: `done` if it holds the
content, `not_started` if it is exactly as it was before (the resumed call then writes it,
once), `unknown` otherwise (runtime/effects.py). Runs on the session actor's thread.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tek_actors.runtime.effects import intended, settled
from tek_actors.runtime.killpoints import kill_point
from tek_actors.sessions.tools import PlannedCall, ToolError

if TYPE_CHECKING:
    from tek_actors.sessions.session import ModelSessionActor

__all__ = ["UnknownOutcome", "settle_unfinished_writes", "write_once"]


class UnknownOutcome(Exception):
    """Whether an effect happened cannot be told (runtime/effects.py): report, never re-run."""


def write_once(host: ModelSessionActor, key: str, planned: PlannedCall) -> dict[str, Any]:
    """Run a write_file call at most once under `key` (its approval): the intent is journaled
    first; asked again (after a restart), the first write's outcome. ToolError if it failed
    (nothing was written); UnknownOutcome if whether it happened cannot be told."""
    known = host.state.intents.find(key)
    if known is None:
        intent_id = "w-" + uuid.uuid4().hex[:12]
        spec = write_intent(planned, intent_id)
        boot, now = host.ctx.journal.boot_id, host.ctx.clock.time()
        host.persist(intended(intent_id, "file.write", spec, key=key, boot=boot, at=now))
        kill_point("tools.write_intended")
        try:
            result = perform_write(planned, spec)
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


def write_intent(planned: PlannedCall, intent_id: str) -> dict[str, Any]:
    """What a write_file call will do, as its intent records it: enough for a later boot to
    tell from the file whether it happened (runtime/effects.py). Never the content itself."""
    args = planned.arguments
    path = Path(args["path"])
    data = args["content"].encode()
    return {
        "path": str(path),
        "bytes": len(data),
        "digest": hashlib.sha256(data).hexdigest(),
        "append": args["append"],
        "before": _file_state(path),
        "temp": str(path.with_name(f".{path.name}.{intent_id}.tmp")),
    }


def _file_state(path: Path) -> list[int] | None:
    """What identifies a file's content without reading it: inode, size, mtime (None: none)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ToolError(f"write_file {path}: {exc.strerror or exc}") from exc
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def perform_write(planned: PlannedCall, intent: dict[str, Any]) -> dict[str, Any]:
    """Do the write its intent describes; ToolError on failure (then nothing was changed)."""
    path = Path(intent["path"])
    data = planned.arguments["content"].encode()
    try:
        if intent["append"]:
            with path.open("ab") as f:
                f.write(data)
                os.fsync(f.fileno())
        else:
            _replace(path, data, Path(intent["temp"]))
    except OSError as exc:
        raise ToolError(f"write_file {path}: {exc.strerror or exc}") from exc
    return {"path": str(path), "bytes": len(data), "append": intent["append"]}


def look_for_write(intent: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Whether the write an intent describes happened, from the file alone: `done`,
    `not_started` (the file is exactly as it was before), or `unknown` where the file cannot
    tell (it changed in another way)."""
    path, temp = Path(intent["path"]), Path(intent["temp"])
    done = {"path": intent["path"], "bytes": intent["bytes"], "append": intent["append"]}
    try:
        temp.unlink(missing_ok=True)  # written, never renamed into place: it never counts
        now = _file_state(path)
        if now == intent["before"]:
            return "not_started", None
        if intent["append"]:
            start = intent["before"][1] if intent["before"] else 0
            with path.open("rb") as f:
                f.seek(start)
                written = f.read()
        else:
            written = path.read_bytes()
        if hashlib.sha256(written).hexdigest() == intent["digest"]:
            return "done", done
    except (OSError, ToolError) as exc:
        return "unknown", {"reason": f"{path}: {exc}"}
    return "unknown", {"reason": f"{path} changed in another way since"}


def _replace(path: Path, data: bytes, temp: Path) -> None:
    """Write a whole file so that a reader (or a crash) sees the old one or the new one."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
