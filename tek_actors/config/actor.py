"""ConfigActor: the one owner of config.json.

A change (`config.set`, `config.unset`, `config.replace`, `config.restore`, or a hand edit of
the file noticed by the watcher) goes through one queue, one at a time:

    validate -> write the file (backup first; atomic) -> journal `config.changed {version}`
    -> hand the new Config to every dependent -> each re-initialises and acknowledges
    -> journal `config.applied {version, applied_by}` -> answer the request

so `ok` means the change is on disk and every component uses it. A dependent that does not
acknowledge within `limits.apply_timeout_ms` (3 s) makes the answer a `timeout` naming it; the
change stays written and in force (the file is the truth), and `config.applied` follows when
the straggler catches up or restarts.

The file is the store of record for secrets: the journal and every event carry redacted values
and a digest of the document, never the document itself. On start the actor compares the file's
digest with the journal's to notice edits made while it was down; a file it cannot use (corrupt,
invalid, from a newer tek, missing when one existed) is reported as `config.invalid` and the
newest valid backup runs instead. A bad file never stops the gateway from starting.

A full or read-only disk changes nothing: a change it refuses (file or journal: the file is then
put back) is answered `StorageUnavailable`; a refused hand edit is tried again at the next look.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka
from pydantic import BaseModel

from tek_actors.config.document import (
    changed_paths,
    digest,
    load,
    propose,
    redact,
    redact_path,
    restart_required,
    unknown_paths,
    value_at,
)
from tek_actors.config.messages import ConfigAck, ConfigChanged, Subscribe
from tek_actors.config.migrations import NewerVersion
from tek_actors.config.model import Config
from tek_actors.config.payloads import (
    GetPayload,
    PathPayload,
    ReplacePayload,
    RestorePayload,
    SetPayload,
    ValidatePayload,
)
from tek_actors.config.store import DEFAULT_DOCUMENT, ConfigStore
from tek_actors.config.vetting import Vetter
from tek_actors.errors import (
    Conflict,
    Internal,
    InvalidValue,
    Overloaded,
    RequestTimeout,
    StorageUnavailable,
    TekError,
)
from tek_actors.runtime import ActorContext, PersistentActor, Ticket, command
from tek_actors.runtime.clock import Timer
from tek_actors.store import NewEvent
from tek_actors.wire import EmptyPayload

__all__ = ["ConfigActor", "ConfigState"]

_QUEUE_BOUND = 64
_MAX_CHANGES = 200


class ConfigState(BaseModel):
    version: int = 0  # changes applied so far (PROTOCOL.md's `version`)
    digest: str = ""  # of the document in force ("" = the built-in defaults, no file)
    applied: int = 0  # the newest version every dependent acknowledged


@dataclass
class _Op:
    kind: str  # set | unset | replace | restore | edit
    ticket: Ticket | None
    payload: Any = None


@dataclass
class _Apply:
    version: int
    ticket: Ticket | None
    waiting: set[str]
    applied_by: list[str]
    restart: list[str]
    timer: Timer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _WatchTick:
    __slots__ = ()


class _ApplyTimeout:
    __slots__ = ("version",)

    def __init__(self, version: int) -> None:
        self.version = version


class ConfigActor(PersistentActor[ConfigState]):
    """Options: `path` (config.json), `hooks` ({name: fn(Config)} for components that are not
    actors, applied synchronously: the frontend), `watch_s` (the edit watcher's period)."""

    domain = "config"
    state_model = ConfigState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.store = ConfigStore(Path(ctx.options["path"]))
        self.hooks: dict[str, Callable[[Config], None]] = dict(ctx.options.get("hooks", {}))
        self.watch_s = float(ctx.options.get("watch_s", 1.0))
        self.raw: dict[str, Any] = {}
        self.config = Config()
        self.source = "defaults"
        self.problem: InvalidValue | None = None  # why config.json itself is not in force
        self.file_newer = False
        self.subscribers: dict[str, pykka.ActorRef[Any]] = {}
        self.queue: deque[_Op] = deque()
        self.current: _Apply | None = None
        self.vetter = Vetter(self)  # a change that adds MCP servers starts them first
        self.stragglers: set[str] = set()  # did not acknowledge state.version in time
        self._seen_stat: tuple[int, int, int] | None = None
        self._moving_stat: tuple[int, int, int] | None = None
        self._edit_refused: str | None = None  # why the last hand edit could not be taken

    # -- events ------------------------------------------------------------------------------

    def apply(self, state: ConfigState, event: NewEvent) -> ConfigState:
        data = event.data
        if event.type == "config.changed":
            return state.model_copy(update={"version": data["version"], "digest": data["digest"]})
        if event.type == "config.applied":
            return state.model_copy(update={"applied": max(state.applied, data["version"])})
        return state  # config.invalid, config.apply_timed_out: reports only

    def public_state(self) -> dict[str, Any]:
        return {"version": self.state.version, "value": redact(self.config.model_dump(mode="json"))}

    # -- start -------------------------------------------------------------------------------

    def on_begin(self) -> None:
        super().on_begin()  # rehydrate: version and digest of what was in force
        self.store.cleanup_temps()
        loaded = self.store.load(expected=bool(self.state.digest))
        self.raw, self.config, self.source = loaded.raw, loaded.config, loaded.source
        self.file_newer, self.problem = loaded.file_newer, loaded.problem
        if loaded.problem is not None:
            self._report_invalid("start", loaded.problem)
        elif loaded.migrated:
            self.log.info("config.json migrated ({}); the old file is backed up", loaded.migrated)
            self._keep(lambda: self.store.write(self.raw), "the migrated config.json")
        elif loaded.source == "file":
            self._keep(lambda: self.store.remember(self.raw), "a backup of config.json")
        self._warn_unknown(self.raw)
        if loaded.digest != self.state.digest:
            before = self._document_with_digest(self.state.digest)
            version = self.state.version + 1
            self.persist(
                self._changed_event(version, "start", before, self.raw, loaded.digest),
                NewEvent("config.applied", {"version": version, "applied_by": ["start"]}),
            )
        elif self.state.applied < self.state.version:
            # A change was cut short (a crash before every dependent acknowledged). Every
            # dependent starts after this actor and reads the configuration in force.
            version = self.state.version
            self.persist(NewEvent("config.applied", {"version": version, "applied_by": ["start"]}))
        for hook in self.hooks.values():
            hook(self.config)
        self._seen_stat = self.store.stat()
        self.after(self.watch_s, _WatchTick())

    def _document_with_digest(self, wanted: str) -> dict[str, Any] | None:
        if not wanted:
            return dict(DEFAULT_DOCUMENT)
        for backup in self.store.backups():
            try:
                doc, _ = self.store.read_backup(backup.name)
            except InvalidValue:
                continue
            if digest(doc) == wanted:
                return doc
        return None

    # -- requests ----------------------------------------------------------------------------

    @command("config.get", GetPayload)
    def get(self, payload: GetPayload) -> dict[str, Any]:
        whole = self.config.model_dump(mode="json")
        value = (
            redact(whole)
            if payload.path is None
            else redact_path(payload.path, value_at(whole, payload.path))
        )
        out: dict[str, Any] = {"version": self.state.version, "value": value}
        out["source"] = self.source
        if self.problem is not None:
            out["problem"] = self.problem.message
        return out

    @command("config.set", SetPayload)
    def set_(self, payload: SetPayload) -> None:
        self._enqueue(_Op("set", self.defer(), payload))

    @command("config.unset", PathPayload)
    def unset(self, payload: PathPayload) -> None:
        self._enqueue(_Op("unset", self.defer(), payload))

    @command("config.replace", ReplacePayload)
    def replace(self, payload: ReplacePayload) -> None:
        self._enqueue(_Op("replace", self.defer(), payload))

    @command("config.restore", RestorePayload)
    def restore(self, payload: RestorePayload) -> None:
        self._enqueue(_Op("restore", self.defer(), payload))

    @command("config.validate", ValidatePayload)
    def validate_(self, payload: ValidatePayload) -> dict[str, Any]:
        if payload.document is not None:
            doc, _ = propose(self.raw, "replace", document=payload.document)
        elif payload.path is not None:
            doc, _ = propose(self.raw, "set", path=payload.path, value=payload.value)
        else:
            raise InvalidValue(
                "config.validate needs a `document`, or a `path` and a `value`",
                details={"path": "payload", "expected": "document, or path and value"},
            )
        paths = changed_paths(self.raw, doc)
        return {"valid": True, "changes": paths, "restart_required": restart_required(paths)}

    @command("config.schema", EmptyPayload)
    def schema(self, payload: EmptyPayload) -> dict[str, Any]:
        return Config.model_json_schema()

    @command("config.backups", EmptyPayload)
    def backups(self, payload: EmptyPayload) -> dict[str, Any]:
        return {"backups": [b.describe() for b in self.store.backups()]}

    def _enqueue(self, op: _Op) -> None:
        if len(self.queue) >= _QUEUE_BOUND:
            assert op.ticket is not None
            self.answer(
                op.ticket,
                error=Overloaded("too many configuration changes queued", retry_after_ms=1_000),
            )
            return
        self.queue.append(op)
        self._next()

    # -- the apply protocol ------------------------------------------------------------------

    def _next(self) -> None:
        while self.current is None and not self.vetter.busy and self.queue:
            op = self.queue.popleft()
            try:
                self._begin(op)
            except StorageUnavailable as refused:
                if op.ticket is None:
                    self._refused_edit(refused)
                    continue
                self.log.warning("config.{} refused: {}", op.kind, refused)
                self.answer(op.ticket, error=refused)
            except TekError as err:
                if op.ticket is None:
                    raise
                self.answer(op.ticket, error=err)
                if isinstance(err, Internal):
                    raise  # what is in memory may not be what is on disk: rehydrate

    def _candidate(self, op: _Op) -> tuple[dict[str, Any], Config] | None:
        """The new document and its Config; None for an edit that was refused (reported)."""
        if op.kind == "edit":
            try:
                raw = self.store.read_raw()
                if raw is None:
                    raise InvalidValue(
                        "config.json was deleted; the last good configuration stays in force "
                        "and a new file is written at the next change",
                        details={"path": "", "expected": "config.json"},
                    )
                doc, config, steps = load(raw)
            except InvalidValue as err:
                self.problem, self.file_newer = err, isinstance(err, NewerVersion)
                self._report_invalid("edit", err)
                return None
            self.problem, self.file_newer = None, False
            if steps:
                self.store.write(doc)
                self._seen_stat = self.store.stat()
            self._warn_unknown(doc)
            return doc, config
        if op.kind == "restore":  # also over a newer tek's file: it is kept as a backup
            doc, config = self.store.read_backup(op.payload.name)
            return doc, config
        if self.file_newer:
            raise Conflict(
                "config.json is from a newer tek and is never overwritten: upgrade tek, or "
                "restore a backup of this one (`tek config backups`, `tek config restore NAME`)",
                details={"path": "config_version"},
            )
        if op.kind == "replace" and op.payload.base_version not in (None, self.state.version):
            raise Conflict(
                f"the configuration changed meanwhile (version {self.state.version}, you "
                f"edited version {op.payload.base_version}); edit it again",
                details={"version": self.state.version},
            )
        p = op.payload
        if op.kind == "replace":
            return propose(self.raw, "replace", document=p.document)
        return propose(self.raw, op.kind, path=p.path, value=getattr(p, "value", None))

    def _begin(self, op: _Op) -> None:
        saved = (self.raw, self.config, self.source, self.problem, self.file_newer)
        try:
            self._change(op)
        except StorageUnavailable:  # nothing changed on disk: nothing changes in memory
            self.raw, self.config, self.source, self.problem, self.file_newer = saved
            raise
        if op.kind == "edit":
            self._edit_refused = None

    def _change(self, op: _Op) -> None:
        candidate = self._candidate(op)
        if candidate is None:
            return
        doc, config = candidate
        if digest(doc) == self.state.digest and self.problem is None:  # else: mend the file
            if op.kind == "edit":
                return  # our own write, or a save without changes
            if self.state.applied >= self.state.version:
                value = {"version": self.state.version, "applied_by": [], "changed": False}
                assert op.ticket is not None
                self.answer(op.ticket, self.persist(result=lambda s: value, ticket=op.ticket))
                return
            self._broadcast(self.state.version, op.ticket, [])  # wait for the stragglers again
            return
        if self.vetter.holds(op, self.config, config):
            return  # its MCP servers start first; it goes on (or is refused) when they did
        written = None
        if op.kind != "edit":
            written = self.store.write(doc)
            self._seen_stat = self.store.stat()
        else:
            self.store.remember(doc)
        version = self.state.version + 1
        before, self.raw, self.config = self.raw, doc, config
        self.source, self.problem, self.file_newer = "file", None, False
        event = self._changed_event(version, op.kind, before, doc, digest(doc))
        try:
            self.persist(event)
        except StorageUnavailable:
            if written is not None:  # unrecorded, so it must not be in the file either
                self.store.undo(written)  # JournalError if it cannot: a crash
                self._seen_stat = self.store.stat()
            raise
        self._broadcast(version, op.ticket, event.data["restart_required"])

    def _broadcast(self, version: int, ticket: Ticket | None, restart: list[str]) -> None:
        applied_by = []
        for name, hook in self.hooks.items():
            hook(self.config)
            applied_by.append(name)
        waiting = set()
        for name, ref in self.subscribers.items():
            waiting.add(name)  # a dead one acknowledges when its restart subscribes again
            try:
                ref.tell(ConfigChanged(version, self.config))
            except pykka.ActorDeadError:
                self.log.debug("{} is restarting; it reads version {} at its start", name, version)
        self.stragglers.clear()
        self.current = _Apply(version, ticket, waiting, applied_by, restart)
        timeout_s = self.config.limits.apply_timeout_ms / 1000
        self.current.timer = self.after(timeout_s, _ApplyTimeout(version))
        self._settle()

    def _acknowledged(self, name: str, version: int) -> None:
        current = self.current
        if current is not None and version == current.version and name in current.waiting:
            current.waiting.discard(name)
            current.applied_by.append(name)
            self._settle()
        elif version == self.state.version and name in self.stragglers:
            self.stragglers.discard(name)
            if not self.stragglers:
                self.report(NewEvent("config.applied", {"version": version, "applied_by": [name]}))

    def _settle(self) -> None:
        current = self.current
        if current is None or current.waiting:
            return
        if current.timer is not None:
            current.timer.cancel()
        self.current = None
        value = {
            "version": current.version,
            "applied_by": sorted(current.applied_by),
            "restart_required": current.restart,
        }
        applied = NewEvent(
            "config.applied", {"version": current.version, "applied_by": value["applied_by"]}
        )
        try:
            self.persist(applied, result=lambda s: value, ticket=current.ticket)
        except StorageUnavailable as refused:
            self._applied_unrecorded(current, refused)
        else:
            if current.ticket is not None:
                self.answer(current.ticket, value)
        self._next()

    def _applied_unrecorded(self, current: _Apply, refused: StorageUnavailable) -> None:
        """Every dependent has the version, but the journal took no record of that: it is in
        force (config.changed is durable); a resend, or the next start, records it."""
        v, (reason, path) = current.version, (refused.details["reason"], refused.details["path"])
        in_force = f"config version {v} is in force, but the journal could not record that"
        error = StorageUnavailable.refused(reason, path, in_force, "then resend (same idem key)")
        error.details.update(version=v, changed=True)
        self.log.warning("{}", error)
        if current.ticket is not None:
            self.answer(current.ticket, error=error)

    def _timed_out(self, version: int) -> None:
        current = self.current
        if current is None or current.version != version or not current.waiting:
            return
        self.current = None
        missing = sorted(current.waiting)
        applied_by = sorted(current.applied_by)
        ms = self.config.limits.apply_timeout_ms
        self.report(
            NewEvent(
                "config.apply_timed_out",
                {"version": version, "applied_by": applied_by, "missing": missing},
            )
        )
        self.stragglers = set(missing)
        self.log.error("config version {}: {} did not acknowledge in {} ms", version, missing, ms)
        if current.ticket is not None:
            self.answer(
                current.ticket,
                error=RequestTimeout(
                    f"{', '.join(missing)} did not acknowledge config version {version} within "
                    f"{ms} ms. The change is written and in force for "
                    f"{', '.join(applied_by) or 'no component yet'}; the others take it when "
                    "they acknowledge or restart (config.applied follows).",
                    details={
                        "version": version,
                        "missing": missing,
                        "applied_by": applied_by,
                        "started": True,
                        "retryable": False,
                    },
                ),
            )
        self._next()

    # -- internal messages -------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, Subscribe):
            self.subscribers[message.name] = message.ref
            self._acknowledged(message.name, self.state.version)
            return self.state.version, self.config
        if isinstance(message, ConfigAck):
            self._acknowledged(message.name, message.version)
            return None
        if self.vetter.on_message(message):
            return None
        if isinstance(message, _ApplyTimeout):
            self._timed_out(message.version)
            return None
        if isinstance(message, _WatchTick):
            self._watch()
            self.after(self.watch_s, _WatchTick())
            return None
        return super().on_message(message)

    def _watch(self) -> None:
        """Notice hand edits of config.json: a change is taken once its stat has held still
        for one period (an editor may write a file in several steps)."""
        stat = self.store.stat()
        if stat == self._seen_stat:
            self._moving_stat = None
            return
        if stat != self._moving_stat:
            self._moving_stat = stat
            return
        self._seen_stat, self._moving_stat = stat, None
        self.queue.append(_Op("edit", None))
        self._next()

    # -- helpers -----------------------------------------------------------------------------

    def _changed_event(
        self,
        version: int,
        cause: str,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        after_digest: str,
    ) -> NewEvent:
        data: dict[str, Any] = {"version": version, "cause": cause, "source": self.source}
        data["digest"] = after_digest
        if before is None:
            paths: list[str] = []
            data["changes"] = None  # what it was before is not known (no backup of it)
        else:
            paths = changed_paths(before, after)
            changes = {p: _redacted_at(after, p) for p in paths[:_MAX_CHANGES]}
            data["changes"] = changes
            if len(paths) > _MAX_CHANGES:
                data["more_changes"] = len(paths) - _MAX_CHANGES
        data["restart_required"] = restart_required(paths)
        return NewEvent("config.changed", data)

    def _report_invalid(self, cause: str, problem: InvalidValue) -> None:
        errors = (problem.details or {}).get("errors") or [
            {"path": (problem.details or {}).get("path", ""), "message": problem.message}
        ]
        self.log.warning(
            "config.json refused ({}): {}; running on {}", cause, problem.message, self.source
        )
        self.report(
            NewEvent(
                "config.invalid",
                {
                    "cause": cause,
                    "message": problem.message,
                    "errors": errors,
                    "in_force": self.source,
                    "newer_version": isinstance(problem, NewerVersion),
                },
            )
        )

    def _keep(self, write: Callable[[], object], what: str) -> None:
        """A write at the start that is a convenience: a refusing disk leaves it for later."""
        try:
            write()
        except StorageUnavailable as refused:
            self.log.warning("{} is not written (it runs from memory): {}", what, refused)

    def _refused_edit(self, refused: StorageUnavailable) -> None:
        """A hand edit that could not be taken: the last good configuration stays in force and
        the watcher looks at the file again (logged once per cause)."""
        self._seen_stat = None
        if refused.message != self._edit_refused:
            self.log.warning("the hand edit of config.json is not taken yet: {}", refused)
            self._edit_refused = refused.message

    def _warn_unknown(self, doc: dict[str, Any]) -> None:
        unknown = list(unknown_paths(doc))
        if unknown:
            self.log.warning("config.json has fields this tek does not know (kept): {}", unknown)

    def status(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "version": self.state.version,
            "source": self.source,
            "subscribers": sorted(self.subscribers),
        }


def _redacted_at(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None  # removed
        node = node[part]
    return redact_path(path, node)
