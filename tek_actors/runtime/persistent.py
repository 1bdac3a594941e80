"""`PersistentActor`: an actor whose state is rebuilt from the journal, and whose commands may
pipeline their persists (`persist_async`, like Akka's persistAsync).

A change is durable before anyone is told: `persist` blocks the actor until the journal has
it; `persist_async` lets the actor go on to its next command at once and sends the answer,
in order, once the journal confirmed it (runtime/_pipeline.py keeps what is pending).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ClassVar, Generic, TypeVar

import msgpack
from pydantic import BaseModel

from tek_actors.errors import Internal, JournalError, StorageUnavailable
from tek_actors.runtime._pipeline import Pending, Pipeline
from tek_actors.runtime.actor import Actor, ActorContext, tell_quietly
from tek_actors.runtime.messages import SnapshotNow, StatusQuery, SyncStateQuery, Ticket
from tek_actors.store import EventRecord, IdemRecord, NewEvent

__all__ = ["PersistentActor"]

S = TypeVar("S", bound=BaseModel)

_PERSIST_TIMEOUT_S = 30.0
_PIPELINE_LIMIT = 256  # pending persists of one actor before its next command waits for them


class PersistentActor(Actor, Generic[S]):
    """An actor whose state is a pydantic model rebuilt from snapshot + journal.

    Subclasses set `state_model`, implement `apply(state, event) -> state` (pure: no I/O, no
    clock, no mutation of its input) and change state only through `persist` or
    `persist_async`.

    `self.state` is always the durable state: what the journal holds. `persist` blocks until
    its events are durable. `persist_async` (from a `pipelined` command) does not: its events
    move `self.latest` at once, so the next pipelined command is validated against them, and
    `self.state` follows when the journal confirms them; answers go out in order, each only
    once its events (and every earlier command's) are durable. Commands marked `reads`, and
    every other message (a plain command, a timer, an answer from another actor), first wait
    until nothing is pending, so they see `self.state == latest` as before: a read never
    misses a change whose event a client has seen. A full or read-only disk that refuses a
    pending append answers it and every later pending command `unavailable` and drops their
    events (the state is the durable one, which never moved); any other journal failure is a
    crash (the new incarnation rehydrates from what is on disk, always a prefix of what was
    pending). Snapshots are of `self.state` only.
    """

    state_model: ClassVar[type[BaseModel]]
    snapshot_every: ClassVar[int] = 100

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.state: S = self.initial_state()
        self.seq = 0
        self._since_snapshot = 0
        self.snapshot_interval = int(ctx.options.get("snapshot_every", type(self).snapshot_every))
        self._pipeline = Pipeline(int(ctx.options.get("pipeline_limit", _PIPELINE_LIMIT)))

    def initial_state(self) -> S:
        return self.state_model()  # type: ignore[return-value]

    @abc.abstractmethod
    def apply(self, state: S, event: NewEvent) -> S:
        """The new state after `event`: pure (no I/O, no clock, no mutation of `state`)."""

    @property
    def latest(self) -> S:
        """The state with every pending `persist_async` applied: what a pipelined command
        validates against. Never shown to anyone before it is durable."""
        return self._pipeline.state_after(self.state)  # type: ignore[no-any-return]

    def on_persisted(self) -> None:
        """Runs on the actor's thread each time `self.state` moved on (its events are
        durable): tell others what changed here."""

    # -- persistence -------------------------------------------------------------------------

    def persist(
        self,
        *events: NewEvent,
        result: Callable[[S], Any] | None = None,
        ticket: Ticket | None = None,
        marks: dict[str, bool] | None = None,
        keep: dict[str, Any] | None = None,
        after: Future[Any] | None = None,
    ) -> Any:
        """Journal `events`, then apply them; return `result(new_state)`.

        Blocks this actor until the events are durable. The new state is computed first (apply
        is pure) so that the reply can be recorded with the events in the same transaction when
        the request carries an idempotency key. `marks` go in the same transaction (see
        Journal.append). A journal failure raises JournalError: a crash,
        since nobody can know whether the events were saved. A full or read-only disk raises
        StorageUnavailable: nothing was written and `self.state` is unchanged, so a command that
        changed nothing else before may let it propagate (it is answered, the actor runs on);
        anywhere else it is a crash like any other. `ticket` names the request whose idem
        record this is, for a deferred request (default: the command being handled). `keep`:
        records kept by key in the same transaction (Journal.append). `after`: another actor's
        append these events were built on (a ProcEnded's `durable`): if it failed, so does this
        one, and nothing is written (Journal.append). Called while
        `persist_async` appends are pending (from a pipelined command), it first waits for
        them, and raises their StorageUnavailable if the disk refused them (the events were
        built on a state that is gone).
        """
        if len(self._pipeline):
            built_on = self.latest
            refused = self.settle_pending()
            if refused is not None or self.state is not built_on:
                raise refused or JournalError("pending changes were dropped")
        new_state = self._applied(self.state, events)
        value = result(new_state) if result is not None else None
        idem = self._idem_record(ticket or self._ticket, value, result is not None)
        if events or idem is not None:
            future = self._append(events, idem, marks, keep, after)
            try:
                records = future.result(timeout=_PERSIST_TIMEOUT_S)
            except TimeoutError as exc:
                raise JournalError("journal did not confirm the write in time") from exc
            if records:
                self.seq = records[-1].seq
        self.state = new_state
        self._since_snapshot += len(events)
        self.on_persisted()
        if self._since_snapshot >= self.snapshot_interval:
            self.snapshot()
        return value

    def persist_async(
        self,
        *events: NewEvent,
        result: Callable[[S], Any] | None = None,
        ticket: Ticket | None = None,
        marks: dict[str, bool] | None = None,
        keep: dict[str, Any] | None = None,
        after: Future[Any] | None = None,
    ) -> Any:
        """From a `pipelined` command (or any message: then `ticket` is whom to answer, if
        anyone): apply `events` to `self.latest` now, queue their append
        (with the idem record, `marks` and `keep`, as `persist` does) and answer the request
        with `result(new latest state)` once they and everything before them are durable.
        Never blocks. Returns that answer. The command must not raise after calling this.
        Any failure of the append comes back to the actor's thread later: a refusal of the disk
        answers this and every later pending command `unavailable`; anything else crashes the
        actor (its pending requests are answered `internal`)."""
        ticket = ticket or self._ticket
        new_state = self._applied(self.latest, events)
        value = result(new_state) if result is not None else None
        idem = self._idem_record(ticket, value, result is not None)
        if not events and idem is None:
            if ticket is not None and ticket is not self._ticket:
                self.reply_in_order(ticket, True, value)
            return value  # a pipelined command's return value is answered in order
        future = self._append(events, idem, marks, keep, after, self._pipeline.tail())
        if ticket is not None:
            self._deferred.add(ticket)
        self._pipeline.push(Pending(ticket, future, new_state, len(events), True, value))
        ref = self.actor_ref
        future.add_done_callback(lambda _: tell_quietly(ref, _Durable()))
        return value

    def _append(
        self,
        events: tuple[NewEvent, ...],
        idem: IdemRecord | None,
        marks: dict[str, bool] | None,
        keep: dict[str, Any] | None,
        *after: Future[Any] | None,
    ) -> Future[list[EventRecord]]:
        return self.ctx.journal.append(
            self.name,
            events,
            idem=idem,
            incarnation=self.ctx.incarnation,
            marks=marks,
            keep=keep,
            after=after,
        )

    def pending_append(self) -> Future[list[EventRecord]] | None:
        """The newest append still on its way to the disk (None: everything is durable). An
        actor that tells another of a change before it is durable sends this with it: the
        other's appends built on the change come `after` it (Journal.append)."""
        return self._pipeline.tail()

    def reply_in_order(self, ticket: Ticket, ok: bool, value: Any) -> None:
        if not len(self._pipeline):
            ticket.respond(ticket, ok, value)
            return
        self._deferred.add(ticket)
        self._pipeline.push(Pending(ticket, None, self.latest, 0, ok, value))

    def settle_pending(self) -> StorageUnavailable | None:
        """Block until every pending append has resolved, and act on each (answers, state).
        Returns the disk's refusal if it dropped pending changes; raises anything else."""
        self._pipeline.wait(timeout=_PERSIST_TIMEOUT_S)
        return self._settle_ready()

    def waits_for_pending(self, message: Any) -> bool:
        """Whether `message` must wait until nothing is pending before it is handled."""
        if isinstance(message, (_Durable, StatusQuery, SyncStateQuery)):
            return False
        if isinstance(message, Ticket):
            spec = self.commands.get(message.type)
            if spec is None:
                return False
            # A read waits too: a client that saw an event (published once it is durable) and
            # asks about it must find it, and the state moves on only as each append is
            # confirmed, a moment after its event went out.
            return spec.reads or not spec.pipelined or self._pipeline.full
        return True

    def on_receive(self, message: Any) -> Any:
        if len(self._pipeline) and not self._crashed:
            try:
                if isinstance(message, _Durable):
                    self._settle_ready()
                    return None
                if self.waits_for_pending(message):
                    self.settle_pending()
            except BaseException as exc:
                self._crash(exc)
                return None
        if isinstance(message, _Durable):
            return None  # nothing pending: settled already
        return super().on_receive(message)

    def _settle_ready(self) -> StorageUnavailable | None:
        """Every pending entry whose append resolved, oldest first: move the durable state on
        and answer it, until one that is still in the journal's queue."""
        advanced = False
        refused: StorageUnavailable | None = None
        while (entry := self._pipeline.pop_ready()) is not None:
            failed = entry.failure()
            if isinstance(failed, StorageUnavailable):
                refused = failed
                self._drop_pending(entry, failed)
                break
            if failed is not None:
                raise failed  # a crash: the entry's request is among the deferred ones
            if entry.future is not None:
                records = entry.future.result()
                if records:
                    self.seq = records[-1].seq
                self.state = entry.state
                self._since_snapshot += entry.events
                advanced = True
            if entry.ticket is not None and entry.ok:
                self.answer(entry.ticket, entry.value)
            elif entry.ticket is not None:
                self.answer(entry.ticket, error=entry.value)
        if advanced:
            self.on_persisted()
            if self._since_snapshot >= self.snapshot_interval:
                self.snapshot()
        return refused

    def _drop_pending(self, first: Pending, refused: StorageUnavailable) -> None:
        """The disk refused `first`: it and every later pending command are answered with the
        refusal, their events are gone (their appends are chained after it, so none is written)
        and `self.state` is where the journal is."""
        dropped = [first, *self._pipeline.drop_all()]
        self.log.warning("{} pending commands answered unavailable: {}", len(dropped), refused)
        for entry in dropped:
            if entry.ticket is not None:
                self.answer(entry.ticket, error=refused)

    def _applied(self, state: S, events: tuple[NewEvent, ...]) -> S:
        for event in events:
            state = self.apply(state, event)
        return state

    def _idem_record(self, ticket: Ticket | None, value: Any, answers: bool) -> IdemRecord | None:
        if ticket is None or ticket.idem is None or not answers:
            return None
        reply = msgpack.packb(value, use_bin_type=True)
        return IdemRecord(ticket.idem, ticket.type, ticket.idem_digest or b"", reply, None)

    def report(self, *events: NewEvent) -> bool:
        """`persist` for events that only report, or that a later start records again: a disk
        that refuses them (full, read-only) is logged, not raised. False if they were not."""
        try:
            self.persist(*events)
        except StorageUnavailable as refused:
            self.log.warning("{} not journaled: {}", ", ".join(e.type for e in events), refused)
            return False
        return True

    def snapshot(self, *, wait: bool = False) -> None:
        """Save the state as of `self.seq` (the journal keeps the newest two)."""
        blob = msgpack.packb(
            {"seq": self.seq, "state": self.state.model_dump(mode="json")}, use_bin_type=True
        )
        future = self.ctx.journal.save_snapshot(self.name, self.seq, blob)
        self._since_snapshot = 0
        if wait:
            future.result(timeout=_PERSIST_TIMEOUT_S)

    def rehydrate(self) -> None:
        """Newest loadable snapshot, then every later event of this actor, in order."""
        journal = self.ctx.journal
        for seq, blob in journal.load_snapshots(self.name):
            try:
                saved = msgpack.unpackb(blob, raw=False)
                self.state = self.state_model.model_validate(saved["state"])  # type: ignore[assignment]
                self.seq = seq
                break
            except Exception as exc:
                self.log.warning(
                    "snapshot {} of {} does not load ({!r}); trying an older one",
                    seq,
                    self.name,
                    exc,
                )
        else:
            self.state, self.seq = self.initial_state(), 0
        replayed = 0
        while True:
            batch = journal.read_since(self.seq, actor=self.name, limit=1000)
            if not batch:
                break
            for record in batch:
                self.state = self.apply(self.state, NewEvent(record.type, record.data))
                self.seq = record.seq
            replayed += len(batch)
        self._since_snapshot = replayed
        self.log.debug(
            "{} rehydrated at seq {} ({} events replayed)", self.name, self.seq, replayed
        )

    def on_begin(self) -> None:
        self.rehydrate()

    def on_end(self) -> None:
        try:
            self.settle_pending()
        except Exception as exc:  # the journal failed under them: their outcome is unknown
            for entry in self._pipeline.drop_all():
                if entry.ticket is not None:
                    self.answer(entry.ticket, error=Internal(f"{self.name} stopped: {exc}"))
            raise
        if self._since_snapshot:
            try:
                self.snapshot(wait=True)
            except StorageUnavailable as refused:  # the journal has every event: replayed
                self.log.warning("{} stops without a snapshot: {}", self.name, refused)

    def on_message(self, message: Any) -> Any:
        if isinstance(message, SnapshotNow):
            self.snapshot(wait=True)
            return self.seq
        if isinstance(message, SyncStateQuery):
            return self.seq, self.public_state()
        return super().on_message(message)

    def public_state(self) -> dict[str, Any]:
        """The state as clients may see it (for `sync.snapshot`); redact secrets here."""
        return self.state.model_dump(mode="json")

    def status(self) -> dict[str, Any]:
        return {"seq": self.seq, "pending": len(self._pipeline)}


class _Durable:
    """A pending append resolved (told by the journal's writer thread): settle what is ready."""

    __slots__ = ()
