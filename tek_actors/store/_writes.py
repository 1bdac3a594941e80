"""What the journal's writer does in a batch's transaction: the schema and one op per kind of
write (append, fence, snapshot, prune), plus the records they produce.

Each op is queued by `Journal` and written by its one writer thread; `write` runs inside the
batch's transaction and its result resolves the op's future once that transaction is durable.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from tek_actors.store import files

if TYPE_CHECKING:
    from tek_actors.store.journal import Journal

__all__ = ["EventRecord", "IdemRecord", "NewEvent"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq   INTEGER PRIMARY KEY,
    ts    REAL    NOT NULL,
    boot  TEXT    NOT NULL,
    actor TEXT    NOT NULL,
    type  TEXT    NOT NULL,
    data  BLOB    NOT NULL,
    idem  TEXT
);
CREATE INDEX IF NOT EXISTS events_by_actor ON events (actor, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    actor TEXT    NOT NULL,
    seq   INTEGER NOT NULL,
    ts    REAL    NOT NULL,
    state BLOB    NOT NULL,
    PRIMARY KEY (actor, seq)
);
CREATE TABLE IF NOT EXISTS idem (
    key    TEXT PRIMARY KEY,
    type   TEXT    NOT NULL,
    digest BLOB    NOT NULL,
    reply  BLOB    NOT NULL,
    seq    INTEGER,
    ts     REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS idem_by_ts ON idem (ts);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, actor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kept (
    actor TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (actor, key)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('head_seq', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('format', 1);
"""

_SNAPSHOTS_KEPT = 2


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event an actor wants journaled: `type` is the wire name (`domain.name`)."""

    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A durable event as stored: its seq is final and never reused."""

    seq: int
    ts: float
    boot: str
    actor: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IdemRecord:
    """The first reply to a request that carried an idempotency key."""

    key: str
    type: str
    digest: bytes
    reply: bytes
    seq: int | None


class _Op(abc.ABC):
    """A unit of work for the writer; `future` resolves once its transaction is durable."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[Any] = Future()

    @abc.abstractmethod
    def write(self, cur: sqlite3.Cursor, journal: Journal, ts: float) -> Any:
        """Do this op's part of the batch's transaction; the result resolves its future."""


class _Append(_Op):
    __slots__ = ("actor", "after", "events", "idem", "incarnation", "keep", "marks", "records")

    def __init__(
        self,
        actor: str,
        events: Sequence[NewEvent],
        idem: IdemRecord | None,
        incarnation: int | None,
        marks: dict[str, bool] | None = None,
        keep: dict[str, Any] | None = None,
        after: Future[Any] | Sequence[Future[Any] | None] | None = None,
    ) -> None:
        super().__init__()
        self.actor = actor
        self.events = events
        self.idem = idem
        self.incarnation = incarnation
        self.marks = marks or {}
        self.keep = keep or {}
        befores = after if isinstance(after, Sequence) else (after,)
        self.after = tuple(f for f in befores if f is not None)
        self.records: list[EventRecord] = []

    def failed_before(self) -> BaseException | None:
        """What an append this one comes after failed with (None while they are pending: in
        the same batch they share its transaction)."""
        for future in self.after:
            if future.done() and future.exception() is not None:
                return future.exception()
        return None

    def write(self, cur: sqlite3.Cursor, journal: Journal, ts: float) -> list[EventRecord]:
        boot, idem = journal.boot_id, self.idem
        rows = []
        for event in self.events:
            journal._next_seq += 1
            record = EventRecord(journal._next_seq, ts, boot, self.actor, event.type, event.data)
            self.records.append(record)
            data = _pack(event.data)
            rows.append((record.seq, ts, boot, self.actor, event.type, data, idem and idem.key))
        cur.executemany(
            "INSERT INTO events (seq, ts, boot, actor, type, data, idem) VALUES (?,?,?,?,?,?,?)",
            rows,
        )
        for key, on in self.marks.items():
            if on:
                cur.execute(
                    "INSERT OR REPLACE INTO marks (key, actor) VALUES (?, ?)", (key, self.actor)
                )
            else:
                cur.execute("DELETE FROM marks WHERE key = ?", (key,))
        for key, value in self.keep.items():
            cur.execute(
                "INSERT OR REPLACE INTO kept (actor, key, value) VALUES (?, ?, ?)",
                (self.actor, key, _pack(value)),
            )
        if idem is not None:
            last = self.records[-1].seq if self.records else None
            cur.execute(
                "INSERT INTO idem (key, type, digest, reply, seq, ts) VALUES (?,?,?,?,?,?)",
                (idem.key, idem.type, idem.digest, idem.reply, last, ts),
            )
        return self.records


class _Fence(_Op):
    """From now on, only `incarnation` (or newer) of `actor` may append."""

    __slots__ = ("actor", "incarnation")

    def __init__(self, actor: str, incarnation: int) -> None:
        super().__init__()
        self.actor, self.incarnation = actor, incarnation

    def write(self, cur: sqlite3.Cursor, journal: Journal, ts: float) -> None:
        """Nothing to write: a fence is applied by `_drop_stale`, before the batch is."""


class _Snapshot(_Op):
    __slots__ = ("actor", "seq", "state")

    def __init__(self, actor: str, seq: int, state: bytes) -> None:
        super().__init__()
        self.actor, self.seq, self.state = actor, seq, state

    def write(self, cur: sqlite3.Cursor, journal: Journal, ts: float) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO snapshots (actor, seq, ts, state) VALUES (?,?,?,?)",
            (self.actor, self.seq, ts, self.state),
        )
        cur.execute(
            "DELETE FROM snapshots WHERE actor = ? AND seq NOT IN "
            "(SELECT seq FROM snapshots WHERE actor = ? ORDER BY seq DESC LIMIT ?)",
            (self.actor, self.actor, _SNAPSHOTS_KEPT),
        )


class _Prune(_Op):
    __slots__ = ("idem_before", "keep_events", "stateless")

    def __init__(self, keep_events: int, idem_before: float, stateless: frozenset[str]) -> None:
        super().__init__()
        self.keep_events, self.idem_before, self.stateless = keep_events, idem_before, stateless

    def write(self, cur: sqlite3.Cursor, journal: Journal, ts: float) -> int:
        # Never drop an event that some actor still needs to rehydrate: only events at or
        # below every actor's newest snapshot may go.
        bound = journal._next_seq - self.keep_events
        covered = cur.execute(
            "SELECT e.actor, COALESCE(MAX(s.seq), 0) FROM (SELECT DISTINCT actor FROM events) e "
            "LEFT JOIN snapshots s ON s.actor = e.actor GROUP BY e.actor"
        ).fetchall()
        needed = [seq for actor, seq in covered if actor not in self.stateless]
        if needed:
            bound = min(bound, *needed)
        deleted = cur.execute("DELETE FROM events WHERE seq <= ?", (bound,)).rowcount
        cur.execute("DELETE FROM idem WHERE ts < ?", (self.idem_before,))
        if journal.incremental:
            files.give_back_free_pages(cur)
        return int(deleted)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False)
