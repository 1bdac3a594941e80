"""config.json and its backups on disk.

    store = ConfigStore(home.config_path)
    loaded = store.load(expected=True)     the in-force document: the file, else the newest valid
                                           backup, else the defaults (with the reason why)
    store.write(doc)                       back up what is there, then replace it atomically

Writes are atomic and durable (temp file in the same folder, fsync, `os.replace`, fsync of the
folder, mode 0600): a reader, or a gateway starting after a `kill -9`, sees the old file or the
new one, never a torn one. Every document the gateway accepts is also kept under `backups/`
(the newest 10), so the newest valid backup is always the last good configuration; a file that
was refused is kept there too (the newest 3, named `-rejected`) before anything replaces it, so
a hand edit is never lost, and so is a file from a newer tek that `restore` replaces (the newest
3, named `-newer`: that tek, once installed again, can restore it). Backups hold the secrets,
like config.json: folder 0700, files 0600.

A disk that refuses a write (full, read-only) raises StorageUnavailable and leaves config.json
as it was; `undo` puts it back after a write the journal then refused to record.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tek_actors.config.document import digest, load
from tek_actors.config.migrations import NewerVersion
from tek_actors.config.model import CURRENT_VERSION, Config
from tek_actors.errors import InvalidValue, JournalError, StorageUnavailable
from tek_actors.store import fsync_dir, refusal, remove_quietly, write_atomic

__all__ = ["Backup", "ConfigStore", "Loaded", "Written"]

DEFAULT_DOCUMENT: dict[str, Any] = {"config_version": CURRENT_VERSION}
KEEP_VALID = 10
KEEP_REJECTED = 3  # of each kind: refused edits, and files from a newer tek
_INVALID_KINDS = ("rejected", "newer")


@dataclass(frozen=True)
class Backup:
    name: str
    path: Path
    created: float
    kind: str  # "valid", "rejected" (a refused edit) or "newer" (from a newer tek)

    @property
    def valid(self) -> bool:
        return self.kind == "valid"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "valid": self.valid, "kind": self.kind}


@dataclass(frozen=True)
class Loaded:
    """The document in force and where it came from."""

    raw: dict[str, Any]
    config: Config
    digest: str
    source: str  # "file", "defaults", or "backup <name>"
    problem: InvalidValue | None = None  # why config.json itself is not in force
    migrated: list[str] = field(default_factory=list)  # steps to write back to the file
    file_newer: bool = False  # config.json is from a newer tek: never overwrite it


@dataclass(frozen=True)
class Written:
    """What `ConfigStore.write` replaced, so that `undo` can put it back."""

    previous: bytes | None  # config.json before (None: there was none)
    backup: Path | None  # the backup this write added of the new document


def encode(raw: dict[str, Any]) -> bytes:
    return (json.dumps(raw, indent=2, ensure_ascii=False) + "\n").encode()


class ConfigStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.backup_dir = self.path.parent / "backups"

    # -- reading -----------------------------------------------------------------------------

    def read_raw(self, path: Path | None = None) -> Any:
        """The parsed JSON of `path` (default config.json); None if it does not exist."""
        path = path or self.path
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidValue(
                f"{path.name} cannot be read: {exc.strerror}",
                details={"path": "", "expected": "a readable file"},
            ) from exc
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidValue(
                f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
                details={"path": "", "expected": "a JSON object"},
            ) from exc
        except UnicodeDecodeError as exc:
            raise InvalidValue(
                f"{path.name} is not UTF-8 text", details={"path": "", "expected": "a JSON object"}
            ) from exc

    def stat(self) -> tuple[int, int, int] | None:
        """(mtime_ns, size, inode) of config.json, or None: what the edit watcher compares."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def load(self, *, expected: bool) -> Loaded:
        """What to run on. `expected`: a config.json existed before (the journal says so), so
        its absence is a problem to report rather than a fresh home."""
        try:
            raw = self.read_raw()
            if raw is None:
                if not expected and not self.backups():
                    return Loaded(dict(DEFAULT_DOCUMENT), Config(), "", "defaults")
                raise InvalidValue(
                    "config.json is missing", details={"path": "", "expected": "config.json"}
                )
            doc, config, steps = load(raw)
            return Loaded(doc, config, digest(doc), "file", migrated=steps)
        except InvalidValue as problem:
            good = self.last_good()
            newer = isinstance(problem, NewerVersion)
            if good is None:
                return Loaded(
                    dict(DEFAULT_DOCUMENT), Config(), "", "defaults", problem, file_newer=newer
                )
            name, doc, config = good
            return Loaded(doc, config, digest(doc), f"backup {name}", problem, file_newer=newer)

    def last_good(self) -> tuple[str, dict[str, Any], Config] | None:
        """The newest backup that loads and validates (migrated in memory)."""
        for backup in self.backups():
            if not backup.valid:
                continue
            try:
                doc, config = self.read_backup(backup.name)
            except InvalidValue:
                continue
            return backup.name, doc, config
        return None

    def read_backup(self, name: str) -> tuple[dict[str, Any], Config]:
        path = self.backup_dir / name
        if Path(name).name != name or not path.is_file():
            raise InvalidValue(
                f"there is no backup {name!r} (see `tek config backups`)",
                details={"path": "name", "expected": "the name of a backup"},
            )
        doc, config, _ = load(self.read_raw(path))
        return doc, config

    def backups(self) -> list[Backup]:
        """Newest first."""
        try:
            names = [p.name for p in self.backup_dir.iterdir() if p.name.startswith("config-")]
        except FileNotFoundError:
            return []
        out = []
        for name in sorted(names, reverse=True):
            stamp = name.split("-")[1]
            try:
                seconds = calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S"))
                created = seconds + int(stamp[15:21]) / 1e6
            except ValueError:
                continue
            path = self.backup_dir / name
            tag = name.removesuffix(".json").rsplit("-", 1)[-1]
            out.append(Backup(name, path, created, tag if tag in _INVALID_KINDS else "valid"))
        return out

    # -- writing -----------------------------------------------------------------------------

    def write(self, doc: dict[str, Any]) -> Written:
        """Back up the current file, replace it with `doc`, keep `doc` as a backup too.

        StorageUnavailable if the disk refused (config.json is as it was)."""
        previous = self._current()
        self.backup_current()
        write_atomic(self.path, encode(doc), mode=0o600)
        try:
            backup = self.remember(doc)
        except StorageUnavailable:
            self.undo(Written(previous, None))
            raise
        return Written(previous, backup)

    def undo(self, written: Written) -> None:
        """Put back config.json as it was before `written`, and drop the backup it added.
        Raises JournalError if the disk refuses that too (config.json then holds the change)."""
        try:
            if written.previous is None:
                remove_quietly(self.path)
                fsync_dir(self.path.parent)
            else:
                write_atomic(self.path, written.previous, mode=0o600)
            if written.backup is not None:
                remove_quietly(written.backup)
        except (OSError, StorageUnavailable) as exc:
            raise JournalError(
                f"config.json holds a change that was refused, and cannot be put back: {exc}"
            ) from exc

    def _current(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidValue(
                f"config.json cannot be read: {exc.strerror}",
                details={"path": "", "expected": "a readable file"},
            ) from exc

    def backup_current(self) -> None:
        """Keep whatever config.json holds now (valid or not) unless a backup already has it."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            doc, _, _ = load(json.loads(data))
        except NewerVersion:
            self._add_backup(data, kind="newer")
            return
        except (ValueError, InvalidValue):
            self._add_backup(data, kind="rejected")
            return
        self.remember(doc, data)

    def remember(self, doc: dict[str, Any], data: bytes | None = None) -> Path | None:
        """Keep `doc` as the newest valid backup, unless it already is; the backup added."""
        newest = next((b for b in self.backups() if b.valid), None)
        if newest is not None:
            with contextlib.suppress(InvalidValue, OSError):
                if digest(self.read_backup(newest.name)[0]) == digest(doc):
                    return None
        return self._add_backup(data if data is not None else encode(doc), kind="valid")

    def _add_backup(self, data: bytes, *, kind: str) -> Path:
        """StorageUnavailable if the disk refuses (write_atomic converts its own errors)."""
        try:
            self.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            undone = "config.json was not written, so nothing changed"
            refused = refusal(
                exc, self.path.parent, undone, "then send it again (no restart needed)"
            )
            raise refused or JournalError(f"cannot make {self.backup_dir}: {exc}") from exc
        now: float = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
        tag = kind if kind != "valid" else digest(json.loads(data))[:8]
        path = self.backup_dir / f"config-{stamp}-{tag}.json"
        while path.exists():  # two writes within a microsecond
            now += 1e-6
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
            path = self.backup_dir / f"config-{stamp}-{tag}.json"
        write_atomic(path, data, mode=0o600)
        self._prune()
        return path

    def _prune(self) -> None:
        backups = self.backups()
        doomed = [b for b in backups if b.valid][KEEP_VALID:]
        for kind in _INVALID_KINDS:
            doomed += [b for b in backups if b.kind == kind][KEEP_REJECTED:]
        for backup in doomed:
            with contextlib.suppress(FileNotFoundError):
                backup.path.unlink()

    def cleanup_temps(self) -> None:
        """Temp files a `kill -9` left behind mid-write (the real file is whole either way)."""
        for folder in (self.path.parent, self.backup_dir):
            with contextlib.suppress(FileNotFoundError):
                for p in folder.iterdir():
                    if p.name.startswith(".") and p.name.endswith(".tmp") and "config" in p.name:
                        with contextlib.suppress(OSError):  # read-only: it can stay
                            p.unlink()
