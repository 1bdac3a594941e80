"""The feed: durable events to the clients that follow them, ephemeral events, heartbeats.

The journal hands every committed batch to the feed (`on_events`, in seq order). A client that
said hello has a `Subscription`, in one of four modes:
- `pending`: its hello waits for a read (is `since_seq` still in the journal?);
- `resyncing`: the actors' states are being gathered for its `sync.snapshot` events;
- `catchup`: the feed reads the journal from `cursor`, a chunk at a time while the client has
  room (the reads run on the reader thread, never on the socket's);
- `live`: committed events are queued to it as they come.
`cursor` is the seq of the last durable event the client has been given (queued or sent). A live
client whose queued events pass their bound (count or bytes, see pump.py) drops back to catch-up
from the last event really sent, so memory stays bounded and nothing is lost. A catch-up read
that finds the events after `cursor` pruned meanwhile turns into a snapshot resync: a client
never sees a gap.

Every frame, events included, goes through the codec and its size bound. A durable event over
the bound is sent with its `seq` and type and `data` `{"too_large": {"size", "max"}}`, so the
sequence stays whole; the client reads the object through its domain's `get`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from loguru import logger

from tek_actors.errors import Conflict, TooLarge
from tek_actors.store import EventRecord, Journal
from tek_actors.transport._reader import JournalReader
from tek_actors.transport._topics import compile_topics, topic_prefixes
from tek_actors.transport.pump import Peer, RouterPump
from tek_actors.wire import (
    Codec,
    HelloPayload,
    durable_event,
    ephemeral_event,
    error_reply,
    ok_reply,
)

__all__ = ["Feed", "Subscription"]

Mode = Literal["pending", "resyncing", "catchup", "live"]
SyncStates = Callable[[Callable[[str], bool]], list[tuple[str, str, int, Any]]]

# Control events every client that said hello receives, whatever its topics.
CONTROL_EVENTS = frozenset({"gateway.shutdown_imminent", "gateway.heartbeat"})


@dataclass(slots=True)
class Subscription:
    client_id: str
    topics: Any  # compiled glob pattern, None for every topic
    domains: Any
    generation: int  # which hello of this peer it is (a later hello supersedes)
    mode: Mode = "pending"
    cursor: int = 0
    floors: dict[str, int] = field(default_factory=dict)
    reading: bool = False  # a catch-up read is on the reader thread
    lagged: int = 0

    def wants(self, name: str) -> bool:
        if name in CONTROL_EVENTS:
            return True
        return self.topics is None or self.topics.match(name) is not None

    def wants_domain(self, domain: str) -> bool:
        return self.domains is None or self.domains.match(domain) is not None

    def passes(self, record: EventRecord) -> bool:
        """Whether `record` is for this client (its topics; after a snapshot resync, not an
        event already inside an actor's snapshot)."""
        floor = self.floors.get(record.actor)
        return self.wants(record.type) and (floor is None or record.seq > floor)


class Feed:
    def __init__(
        self,
        *,
        pump: RouterPump,
        reader: JournalReader,
        journal: Journal,
        codec: Codec,
        sync_states: SyncStates,
        replay_chunk: int,
        boot_id: str,
        on_answered: Callable[[bytes], None],
    ) -> None:
        self._pump = pump
        self._reader = reader
        self._journal = journal
        self._codec = codec
        self._sync_states = sync_states
        self.replay_chunk = replay_chunk
        self.boot_id = boot_id
        self.head = journal.head_seq
        self.subs: dict[bytes, Subscription] = {}
        self.by_client_id: dict[str, bytes] = {}
        self._generations = 0
        self._catching_up: set[bytes] = set()
        self._on_answered = on_answered  # a deferred hello reply went out (bye may be due)
        self.hellos_out: dict[bytes, int] = {}  # peers whose hello waits for a read
        self.counters = {"lagged": 0, "too_large_events": 0}

    # -- hello -------------------------------------------------------------------------------

    def hello(
        self, peer: Peer, request_id: Any, hello: HelloPayload, protocol: dict[str, Any]
    ) -> None:
        """Subscribe `peer`; the reply (with `protocol`'s fields) says how it resyncs, and
        comes before any event of the subscription."""
        previous = self.by_client_id.get(hello.client_id)
        if previous is not None and previous != peer.identity:
            self.forget(previous)  # the same client, reconnected: it resumes here
            self._pump.forget(previous)
        self.by_client_id[hello.client_id] = peer.identity
        self._generations += 1
        sub = Subscription(
            hello.client_id,
            compile_topics(hello.topics),
            topic_prefixes(hello.topics),
            self._generations,
        )
        self.subs[peer.identity] = sub
        self._catching_up.discard(peer.identity)
        self._pump.drop_events(peer)
        since = hello.since_seq
        if since is None or since >= self.head:
            self._start(peer, sub, request_id, protocol, since, first_seq=None)
            return

        identity = peer.identity
        self.hellos_out[identity] = self.hellos_out.get(identity, 0) + 1

        def decided(first: Any) -> None:
            left = self.hellos_out.pop(identity, 1) - 1
            if left:
                self.hellos_out[identity] = left
            if self.subs.get(identity) is sub and identity in self._pump.peers:
                first_seq = first if isinstance(first, int) else None  # a failed read: snapshot
                self._start(peer, sub, request_id, protocol, since, first_seq=first_seq)
            elif identity in self._pump.peers:  # a later hello replaced it: that one decides
                error = Conflict("a later hello on this connection replaced this one")
                self._pump.send(peer, self._codec.encode(error_reply(request_id, error.to_wire())))
            self._on_answered(identity)

        self._reader.read(self._journal.first_seq, decided)

    def _start(
        self,
        peer: Peer,
        sub: Subscription,
        request_id: Any,
        protocol: dict[str, Any],
        since: int | None,
        *,
        first_seq: int | None,
    ) -> None:
        head = self.head
        if since is None or since == head:
            resync, sub.cursor, sub.mode = "none", head, "live"
        elif since > head or first_seq is None or since < first_seq - 1:
            resync = "snapshot"
        else:
            resync, sub.cursor, sub.mode = "replay", since, "catchup"
        result = {**protocol, "boot_id": self.boot_id, "head_seq": head, "resync": resync}
        self._pump.send(peer, self._codec.encode(ok_reply(request_id, result)))
        peer.sent_seq = sub.cursor
        if resync == "snapshot":
            self._gather(peer, sub)
        elif resync == "replay":
            self._catch_up(peer.identity)

    # -- live events -------------------------------------------------------------------------

    def on_events(self, records: list[EventRecord]) -> None:
        frames: dict[int, bytes] = {}
        for identity, sub in list(self.subs.items()):
            if sub.mode != "live":
                continue
            peer = self._pump.peers.get(identity)
            if peer is None:
                continue
            for record in records:
                if record.seq <= sub.cursor:
                    continue
                sub.cursor = record.seq
                if not sub.passes(record):
                    continue
                frame = frames.get(record.seq)
                if frame is None:
                    frame = frames[record.seq] = self._event_frame(record)
                self._pump.send(peer, frame, seq=record.seq)
                if sub.mode != "live":
                    break  # it lagged: the rest comes from the journal
        self.head = max(self.head, records[-1].seq)

    def _event_frame(self, record: EventRecord) -> bytes:
        boot = record.boot or self.boot_id
        try:
            return self._codec.encode(
                durable_event(record.type, record.seq, boot, record.ts, record.data)
            )
        except TooLarge as exc:
            self.counters["too_large_events"] += 1
            data = {"too_large": {"size": exc.details["size"], "max": exc.details["max"]}}
            return self._codec.encode(durable_event(record.type, record.seq, boot, record.ts, data))

    def ephemeral(self, name: str, data: dict[str, Any]) -> None:
        frame = self._codec.encode(
            ephemeral_event(name, self.head, self.boot_id, time.time(), data)
        )
        for identity, sub in list(self.subs.items()):
            if (sub.mode == "live" and sub.wants(name)) or name == "gateway.shutdown_imminent":
                peer = self._pump.peers.get(identity)
                if peer is not None:
                    self._pump.send(peer, frame)

    def on_lagging(self, peer: Peer) -> None:
        """`peer`'s queued events passed their bound: drop them, read them again later."""
        sub = self.subs.get(peer.identity)
        dropped = self._pump.drop_events(peer)
        if sub is None:
            return
        sub.cursor = peer.sent_seq
        sub.lagged += 1
        self.counters["lagged"] += 1
        logger.warning(
            "client {} fell behind ({} queued events dropped); it will catch up "
            "from the journal at seq {}",
            sub.client_id,
            dropped,
            sub.cursor,
        )
        if sub.mode == "live":
            sub.mode = "catchup"
            self._catch_up(peer.identity)

    # -- catch-up ----------------------------------------------------------------------------

    @property
    def catching_up(self) -> bool:
        return bool(self._catching_up)

    def _catch_up(self, identity: bytes) -> None:
        self._catching_up.add(identity)
        self._pump.poll_fast(True)
        self.advance()

    def advance(self) -> None:
        """Ask for the next chunk of every catching-up client that has room for it."""
        for identity in list(self._catching_up):
            sub = self.subs.get(identity)
            peer = self._pump.peers.get(identity)
            if sub is None or peer is None or sub.mode != "catchup":
                self._catching_up.discard(identity)
                continue
            if sub.reading or peer.events >= self.replay_chunk:
                continue  # a read is out, or let it drain first
            sub.reading = True
            self._reader.read(*self._chunk_read(identity, sub))
        if not self._catching_up:
            self._pump.poll_fast(False)

    def _chunk_read(
        self, identity: bytes, sub: Subscription
    ) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        """The next chunk's read (reader thread) and what takes its records (socket thread)."""
        cursor, chunk = sub.cursor, self.replay_chunk

        def read() -> Any:
            return self._journal.read_since(cursor, limit=chunk)

        def take(records: Any) -> None:
            self._read(identity, sub, cursor, records)

        return read, take

    def _read(self, identity: bytes, sub: Subscription, cursor: int, records: Any) -> None:
        sub.reading = False
        peer = self._pump.peers.get(identity)
        if self.subs.get(identity) is not sub or peer is None or sub.cursor != cursor:
            return  # superseded meanwhile (a new hello, a lag that moved the cursor)
        if isinstance(records, Exception):
            return  # the next advance() asks again
        # Seqs are contiguous in the journal: a hole after `cursor` is events pruned since the
        # hello chose replay. (After a snapshot resync the snapshots cover what was pruned.)
        if records and records[0].seq != cursor + 1 and not sub.floors:
            logger.info("events after seq {} were pruned during a catch-up: resync", cursor)
            self._gather(peer, sub)
            return
        for record in records:
            sub.cursor = record.seq
            if sub.passes(record):
                self._pump.send(peer, self._event_frame(record), seq=record.seq)
                if sub.mode != "catchup" or sub.cursor != record.seq:
                    return  # it lagged even here: start again from what was sent
        if len(records) < self.replay_chunk and sub.cursor >= self.head:
            sub.mode = "live"
            self._catching_up.discard(identity)
        self.advance()

    # -- snapshot resync ---------------------------------------------------------------------

    def _gather(self, peer: Peer, sub: Subscription) -> None:
        """Ask the actors for their state off this thread (they may take a while); the answer
        comes back as a post. Events meanwhile are not lost: the client then catches up."""
        sub.mode = "resyncing"
        identity, wants = peer.identity, sub.wants_domain

        def gather() -> None:
            try:
                states = self._sync_states(wants)
            except Exception:
                logger.opt(exception=True).error("gathering sync.snapshot states failed")
                states = []
            self._pump.post(("snapshots", identity, sub, states))

        threading.Thread(target=gather, name="tek-resync", daemon=True).start()

    def on_snapshots(
        self, identity: bytes, sub: Subscription, states: list[tuple[str, str, int, Any]]
    ) -> None:
        peer = self._pump.peers.get(identity)
        if self.subs.get(identity) is not sub or sub.mode != "resyncing" or peer is None:
            return  # it said hello again meanwhile: that hello decides
        for domain, actor, seq, state in states:
            sub.floors[actor] = seq
            data = {"domain": domain, "actor": actor, "state": state}
            frame = self._codec.encode(
                durable_event("sync.snapshot", seq, self.boot_id, time.time(), data)
            )
            self._pump.send(peer, frame)
        sub.cursor = min([self.head, *(seq for _, _, seq, _ in states)])
        peer.sent_seq = sub.cursor
        sub.mode = "catchup"
        self._catch_up(identity)

    # -- heartbeats and leaving --------------------------------------------------------------

    def tick(self, now: float, heartbeat_s: float) -> None:
        """A heartbeat to each subscriber that heard nothing for a while (a send to a dead
        peer tells the socket it is gone)."""
        beat = None
        for identity in list(self.subs):
            peer = self._pump.peers.get(identity)
            if peer is None:
                self.forget(identity)
                continue
            if now - peer.last_sent >= heartbeat_s and not peer.out:
                if beat is None:
                    data = {"head_seq": self.head}
                    event = ephemeral_event(
                        "gateway.heartbeat", self.head, self.boot_id, time.time(), data
                    )
                    beat = self._codec.encode(event)
                self._pump.send(peer, beat)

    def forget(self, identity: bytes) -> None:
        sub = self.subs.pop(identity, None)
        self._catching_up.discard(identity)
        if sub is not None and self.by_client_id.get(sub.client_id) == identity:
            del self.by_client_id[sub.client_id]
