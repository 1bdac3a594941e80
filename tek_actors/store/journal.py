"""The journal: every durable event of the gateway under one sequence, in SQLite on disk.

One writer thread owns the only writing connection. Appends from every actor are queued to it;
it takes whatever has queued while the previous commit was being synced and writes it as one
transaction (group commit), so durability costs one fsync per batch, not per event. Nobody's
future resolves before that transaction's commit returned, and with `synchronous=FULL` in WAL
mode SQLite has fsynced the log by then.

A full or read-only disk is not a failure: SQLite rolls such a transaction back whole, so the
writer fails that batch with `StorageUnavailable` (none of it is on disk) and goes on; each
later batch is a real attempt, so writes are taken again as soon as there is room. Any other
failed write (an fsync, an I/O error) is fatal: the writer cannot know what reached the disk, so
it fails that batch and every later append with `JournalError`, reports through `on_failure`,
and stops. Nothing is retried. A prune gives the pages it emptied back to the disk (see
`files.make_incremental`). What each kind of write does inside the transaction is in
`_writes.py`.

An append may name the appends it comes `after` (an actor that pipelines its persists; an actor
that acts on another's change before it is durable): if one of them failed, this one fails with
the same error and is not written, so a refused batch never leaves a change on disk without the
change it was built on. The queue is one FIFO, so an append made after another was queued is
in the same transaction or a later one: once it is durable, so is every append it comes after.

Readers (replay for clients, rehydration of actors, idempotency look-ups) use a small pool of
read-only connections and never block the writer (WAL).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from loguru import logger

from tek_actors.errors import JournalError, StorageUnavailable, TekError
from tek_actors.store import files
from tek_actors.store._writes import (
    _SCHEMA,
    EventRecord,
    IdemRecord,
    NewEvent,
    _Append,
    _Fence,
    _Op,
    _Prune,
    _Snapshot,
    _unpack,
)

__all__ = ["EventRecord", "IdemRecord", "Journal", "NewEvent", "Snapshots", "StaleWriter"]


class StaleWriter(JournalError):
    """A bug's or a stuck thread's fault: an actor incarnation that was replaced tried to write.

    Not a disk failure: the journal goes on; only that write is refused."""


_READ_POOL = 4
_UNDONE = "this change was not written, so nothing changed"
_THEN = "then send it again: the journal takes changes as soon as it can (no restart needed)"

_STOP = object()


class Journal:
    """The gateway's event journal, snapshots and idempotency records (one SQLite file).

    Thread-safe. `open()` starts the writer thread; `close()` drains and stops it.
    `on_committed(records)` runs on the writer thread after each durable batch, with the events
    in seq order: it must be quick and must not call back into the journal's writer.
    """

    def __init__(
        self,
        path: Path,
        *,
        boot_id: str,
        on_committed: Callable[[list[EventRecord]], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        max_batch: int = 1024,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.boot_id = boot_id
        self.on_committed = on_committed
        self.on_failure = on_failure
        self._max_batch = max(1, max_batch)
        self._now = now
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer: sqlite3.Connection | None = None
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._next_seq = 0
        self._head_seq = 0
        self._failed: JournalError | None = None
        self._refused: StorageUnavailable | None = None  # the disk is full or read-only now
        self.incremental = False  # auto_vacuum=INCREMENTAL: a prune gives its pages back
        self._fences: dict[str, int] = {}
        self._closed = False
        self.batches = 0  # how many transactions the writer committed (for tests and bench)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> Journal:
        """Create or open the file (mode 0600), check its schema, start the writer thread.
        Raises StorageUnavailable (a full or read-only disk) or JournalError (anything else)."""
        then = "then start the gateway again"
        created = files.create_private(self.path, "the journal cannot be written", then)
        try:
            self._writer = self._connect(readonly=False)
            self._writer.executescript(_SCHEMA)
            (head,) = self._writer.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
        except sqlite3.Error as exc:
            undone = "the journal cannot be written"
            refused = files.sqlite_refusal(exc, self.path, undone, then, opening=True)
            raise refused or JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        self.incremental = files.make_incremental(self._writer, self.path)
        if created:
            files.fsync_dir(self.path.parent)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        self._next_seq = self._head_seq = int(head)
        self._thread = threading.Thread(target=self._run, name="tek-journal-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, *, timeout: float = 10.0) -> None:
        """Let the writer finish what is queued, then close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if not readonly:
            # Before journal_mode: on a new file it takes effect at once (see make_incremental)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute(f"PRAGMA journal_size_limit={files.WAL_KEPT_BYTES}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        if readonly:
            conn.execute("PRAGMA query_only=1")
        return conn

    # -- writing -----------------------------------------------------------------------------

    @property
    def head_seq(self) -> int:
        """The seq of the newest durable event (0 for an empty journal)."""
        return self._head_seq

    @property
    def failed(self) -> TekError | None:
        """The JournalError that stopped the journal, else `refused` (it goes on)."""
        return self._failed or self._refused

    @property
    def refused(self) -> StorageUnavailable | None:
        """Why the disk refused the last batch (full, read-only), until a batch is written."""
        return self._refused

    def append(
        self,
        actor: str,
        events: Sequence[NewEvent],
        *,
        idem: IdemRecord | None = None,
        incarnation: int | None = None,
        marks: dict[str, bool] | None = None,
        keep: dict[str, Any] | None = None,
        after: Future[Any] | Sequence[Future[Any] | None] | None = None,
    ) -> Future[list[EventRecord]]:
        """Queue events (and the idempotency record of the request that caused them).

        `marks` sets (True) or clears (False) named marks in the same transaction: durable flags
        such as "this session has unanswered messages", found again with `marks(prefix)`
        without reading the events. `keep` stores msgpack-able values under `actor`'s keys in
        the same transaction (replacing what was kept under the key; never pruned), read back
        with `kept` and `kept_under`: records an actor no longer holds in its state. `after`:
        the future (or futures) of appends queued earlier, by this actor or another; if one
        failed, this append fails with its error and writes nothing. Does not block. The
        future resolves with the stored records once they are durable, or fails with
        JournalError (StaleWriter if `incarnation` was fenced off) or StorageUnavailable.
        """
        return self._submit(_Append(actor, events, idem, incarnation, marks, keep, after))

    def fence(self, actor: str, incarnation: int, *, timeout: float = 30.0) -> None:
        """Refuse, from now on, appends by older incarnations of `actor`.

        Blocks until the writer has committed everything queued before: once this returns, no
        append of an older incarnation can reach the disk, so the new incarnation's rehydration
        sees the last write the old one will ever make.
        """
        self._submit(_Fence(actor, incarnation)).result(timeout)

    def save_snapshot(self, actor: str, seq: int, state: bytes) -> Future[None]:
        """Queue a snapshot of `actor` valid at `seq`; the newest two per actor are kept."""
        return self._submit(_Snapshot(actor, seq, state))

    def prune(
        self,
        *,
        keep_events: int,
        idem_max_age_s: float,
        stateless: frozenset[str] = frozenset({"gateway"}),
    ) -> Future[int]:
        """Queue removal of old events and idempotency records.

        An event goes only if it is older than the newest `keep_events` and covered by the
        newest snapshot of every actor that rehydrates from the journal (all but `stateless`).
        """
        return self._submit(_Prune(keep_events, self._now() - idem_max_age_s, stateless))

    def _submit(self, op: _Op) -> Future[Any]:
        if self._failed is not None:
            op.future.set_exception(self._failed)
        elif self._closed:
            op.future.set_exception(JournalError("the journal is closed"))
        else:
            self._queue.put(op)
        return op.future

    def _run(self) -> None:
        assert self._writer is not None
        cur = self._writer.cursor()
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch: list[_Op] = [item]
            stopping = self._take_queued(batch)
            if not self._commit(cur, batch):
                return
        self._writer.close()

    def _take_queued(self, batch: list[_Op]) -> bool:
        """Move what is queued into `batch` (up to max_batch); True if a stop was queued."""
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _commit(self, cur: sqlite3.Cursor, batch: list[_Op]) -> bool:
        batch = self._drop_stale(batch)
        ts = self._now()
        seq_before = self._next_seq
        results: list[Any] = []
        try:
            changes_before = cur.connection.total_changes  # in the try: it may be closed
            cur.execute("BEGIN IMMEDIATE")
            for op in batch:
                results.append(op.write(cur, self, ts))
            if self._next_seq != seq_before:
                cur.execute("UPDATE meta SET value = ? WHERE key = 'head_seq'", (self._next_seq,))
            cur.execute("COMMIT")
        except BaseException as exc:
            refused = files.sqlite_refusal(exc, self.path, _UNDONE, _THEN)
            if refused is None or not files.rolled_back(cur.connection):
                self._fail(batch, exc)
                return False
            self._refuse(batch, refused, seq_before)
            return True
        if self._refused is not None and cur.connection.total_changes != changes_before:
            logger.warning("the journal at {} takes writes again", self.path)
            self._refused = None
        self.batches += 1
        self._head_seq = self._next_seq
        if self._next_seq != seq_before and self.on_committed is not None:
            records = [r for op in batch if isinstance(op, _Append) for r in op.records]
            try:
                self.on_committed(records)
            except Exception:
                logger.opt(exception=True).error("journal on_committed hook failed")
        for op, result in zip(batch, results, strict=True):
            op.future.set_result(result)
        return True

    def _drop_stale(self, batch: list[_Op]) -> list[_Op]:
        """Apply the fences and fail the appends of fenced-off incarnations and those whose
        `after` failed; keep the rest in order (appends before a fence in the same batch are
        still written). An `after` in the same batch is not done yet: it shares this
        transaction, so both are written or neither."""
        kept: list[_Op] = []
        for op in batch:
            if isinstance(op, _Fence):
                self._fences[op.actor] = op.incarnation
            elif isinstance(op, _Append) and (failure := op.failed_before()) is not None:
                op.future.set_exception(failure)
                continue
            elif (
                isinstance(op, _Append)
                and op.incarnation is not None
                and op.incarnation < self._fences.get(op.actor, 0)
            ):
                op.future.set_exception(
                    StaleWriter(
                        f"{op.actor} incarnation {op.incarnation} was replaced; write refused"
                    )
                )
                continue
            kept.append(op)
        return kept

    def _refuse(self, batch: list[_Op], refused: StorageUnavailable, seq_before: int) -> None:
        """Fail the batch that the disk refused (none of it was written); the writer goes on."""
        self._next_seq = seq_before
        if self._refused is None:
            logger.error("the journal refuses changes until it can write: {}", refused)
        self._refused = refused
        for op in batch:
            if isinstance(op, _Fence):
                op.future.set_result(None)  # a fence needs no disk, and it holds
            else:
                op.future.set_exception(refused)

    def _fail(self, batch: list[_Op], exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            assert self._writer is not None
            self._writer.execute("ROLLBACK")
        self._failed = JournalError(f"journal write failed, the journal is stopped: {exc}")
        logger.opt(exception=exc).error("journal write failed; every later append will fail")
        pending = list(batch)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                pending.append(item)
        for op in pending:
            op.future.set_exception(self._failed)
        with contextlib.suppress(Exception):
            assert self._writer is not None
            self._writer.close()
        if self.on_failure is not None:
            self.on_failure(self._failed)

    # -- reading -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise JournalError("the journal is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect(readonly=True)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from exc
        finally:
            if self._readers.qsize() < _READ_POOL and not self._closed:
                self._readers.put(conn)
            else:
                with self._readers_lock:
                    if conn in self._all_readers:
                        self._all_readers.remove(conn)
                conn.close()

    def read_since(
        self, seq: int, *, limit: int = 1000, actor: str | None = None
    ) -> list[EventRecord]:
        """Durable events with seq > `seq`, oldest first, at most `limit` (only `actor`'s)."""
        sql = "SELECT seq, ts, boot, actor, type, data FROM events WHERE seq > ?"
        args: tuple[Any, ...] = (seq,)
        if actor is not None:
            sql += " AND actor = ?"
            args += (actor,)
        sql += " ORDER BY seq LIMIT ?"
        with self._reader() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [EventRecord(s, ts, b, a, t, _unpack(d)) for s, ts, b, a, t, d in rows]

    def marks(self, prefix: str) -> list[str]:
        """The marks set (by `append(..., marks=...)`) whose key starts with `prefix`."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT key FROM marks WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, prefix + "\uffff"),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def kept(self, actor: str, key: str) -> Any:
        """The value `actor` kept under `key` (see `append(keep=...)`), or None."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT value FROM kept WHERE actor = ? AND key = ?", (actor, key)
            ).fetchone()
        return None if row is None else _unpack(row[0])

    def kept_under(self, actor: str, prefix: str) -> list[Any]:
        """The values `actor` kept under keys that start with `prefix`, in key order."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT value FROM kept WHERE actor = ? AND key >= ? AND key < ? ORDER BY key",
                (actor, prefix, prefix + "\uffff"),
            ).fetchall()
        return [_unpack(r[0]) for r in rows]

    def first_seq(self) -> int:
        """The oldest seq still kept; head_seq + 1 when no event is kept."""
        with self._reader() as conn:
            (first,) = conn.execute("SELECT MIN(seq) FROM events").fetchone()
        return int(first) if first is not None else self._head_seq + 1

    def load_snapshots(self, actor: str) -> Snapshots:
        """The kept snapshots of `actor` as (seq, state), newest first. The newest is read now;
        the older ones only if something goes past it (iterating on, `len`, an index): a
        rehydration stops at the first that loads, nearly always the newest."""
        return Snapshots(self, actor)

    def _snapshot_rows(self, actor: str, *, before: int | None) -> list[tuple[int, bytes]]:
        """The newest snapshot of `actor` (`before` None), or all of those older than seq
        `before`, newest first."""
        sql = "SELECT seq, state FROM snapshots WHERE actor = ?"
        args: list[Any] = [actor]
        if before is not None:
            sql, args = sql + " AND seq < ?", [actor, before]
        sql += " ORDER BY seq DESC" + (" LIMIT 1" if before is None else "")
        with self._reader() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [(int(s), bytes(b)) for s, b in rows]

    def idem_lookup(self, key: str) -> IdemRecord | None:
        """The recorded first reply for an idempotency key, if the request completed."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT key, type, digest, reply, seq FROM idem WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return IdemRecord(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4])


class Snapshots(Sequence[tuple[int, bytes]]):
    """`Journal.load_snapshots`: the kept snapshots of one actor, newest first, the older ones
    read on first use. Compares equal to a list of the same (seq, state) pairs."""

    def __init__(self, journal: Journal, actor: str) -> None:
        self._journal, self._actor = journal, actor
        self._rows = journal._snapshot_rows(actor, before=None)
        self._complete = not self._rows  # no newest: no older ones either

    def _read_older(self) -> None:
        if not self._complete:
            older = self._journal._snapshot_rows(self._actor, before=self._rows[0][0])
            self._rows += older
            self._complete = True

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        index = 0
        while True:
            if index == len(self._rows) and not self._complete:
                self._read_older()
            if index == len(self._rows):
                return
            yield self._rows[index]
            index += 1

    def __len__(self) -> int:
        self._read_older()
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        self._read_older()
        return self._rows[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"Snapshots({self._actor!r}, {list(self)!r})"
