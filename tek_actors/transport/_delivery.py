"""Getting frames out to clients: replies, durable events (live, catch-up, snapshot resync),
ephemeral events and heartbeats, with a bounded out-queue per client. Runs on the frontend thread
only (a mixin of Frontend, split out to keep each file to one concern)."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import zmq
from loguru import logger

from tek_actors.errors import TekError
from tek_actors.store import EventRecord, Journal
from tek_actors.transport._clients import ClientSession
from tek_actors.transport._contract import FrontendSettings
from tek_actors.wire import Codec, durable_event, ephemeral_event, error_reply

__all__ = ["Delivery"]

_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.NOBLOCK | zmq.SNDMORE)


class Delivery:
    """Fan-out and flow control; expects the attributes Frontend sets up."""

    settings: FrontendSettings
    _unflushed: set[bytes] | None = None
    _clients: dict[bytes, ClientSession]
    _by_client_id: dict[str, bytes]
    _backlogged: set[bytes]
    _catching_up: set[bytes]
    _router: zmq.Socket[Any] | None
    _codec: Codec
    _journal: Journal
    _head: int
    boot_id: str
    counters: dict[str, int]

    # -- events ------------------------------------------------------------------------------

    def _on_events(self, records: list[EventRecord]) -> None:
        boot = self.boot_id
        frames: dict[int, bytes] = {}
        for client in list(self._clients.values()):
            if client.mode != "live":
                continue
            for record in records:
                if record.seq <= client.cursor:
                    continue
                client.cursor = record.seq
                if not client.wants(record.type) or not client.passes_floor(
                    record.actor, record.seq
                ):
                    continue
                frame = frames.get(record.seq)
                if frame is None:
                    frame = frames[record.seq] = self._event_frame(record, boot)
                client.queue(frame, seq=record.seq, is_event=True)
            if client.queued_events > self.settings.client_queue_bound:
                self._lag(client)
            else:
                self._flush(client)
        self._head = max(self._head, records[-1].seq)

    def _event_frame(self, record: EventRecord, boot: str) -> bytes:
        frame: bytes = msgpack.packb(
            durable_event(record.type, record.seq, record.boot or boot, record.ts, record.data),
            use_bin_type=True,
        )
        return frame

    def _on_ephemeral(self, name: str, data: dict[str, Any]) -> None:
        frame = self._codec.encode(
            ephemeral_event(name, self._head, self.boot_id, time.time(), data)
        )
        for client in list(self._clients.values()):
            if (client.mode == "live" and client.wants(name)) or (
                name == "gateway.shutdown_imminent" and client.mode != "none"
            ):
                client.queue(frame)
                self._flush(client)

    def _lag(self, client: ClientSession) -> None:
        dropped = client.fall_back_to_catchup()
        self.counters["lagged"] += 1
        logger.warning(
            "client {} fell behind ({} queued events dropped); it will catch up "
            "from the journal at seq {}",
            client.client_id,
            dropped,
            client.cursor,
        )
        self._catching_up.add(client.identity)

    def _advance_catchups(self) -> None:
        chunk = self.settings.replay_chunk
        for identity in list(self._catching_up):
            client = self._clients.get(identity)
            if client is None or client.mode != "catchup":
                self._catching_up.discard(identity)
                continue
            if client.queued_events >= chunk:
                continue  # let it drain first
            records = self._journal.read_since(client.cursor, limit=chunk)
            boot = self.boot_id
            for record in records:
                client.cursor = record.seq
                if client.wants(record.type) and client.passes_floor(record.actor, record.seq):
                    client.queue(self._event_frame(record, boot), seq=record.seq, is_event=True)
            if len(records) < chunk and client.cursor >= self._head:
                client.mode = "live"
                self._catching_up.discard(identity)
            self._flush(client)

    # -- sending -----------------------------------------------------------------------------

    def _reply(self, client: ClientSession, reply: dict[str, Any]) -> None:
        try:
            frame = self._codec.encode(reply)
        except TekError as err:
            frame = self._codec.encode(error_reply(reply.get("re"), err.to_wire()))
        client.queue(frame)
        if self._unflushed is not None:
            self._unflushed.add(client.identity)  # sent together at the end of this burst
        else:
            self._flush(client)

    def _flush_burst(self) -> None:
        """Send what a burst of requests queued: consecutive sends wake libzmq's I/O thread
        once rather than once per reply."""
        unflushed, self._unflushed = self._unflushed, None
        for identity in unflushed or ():
            client = self._clients.get(identity)
            if client is not None:
                self._flush(client)

    def _reply_error(self, client: ClientSession, request_id: Any, error: TekError) -> None:
        self._reply(client, error_reply(request_id, error.to_wire()))

    def _flush(self, client: ClientSession) -> None:
        router = self._router
        if router is None:
            return
        out = client.out
        while out:
            item = out[0]
            try:
                # Two plain sends with int flags: send_multipart costs twice as much per
                # message on this path. For a ROUTER, refusal (EAGAIN, unknown peer) comes at
                # the first part, before anything was queued.
                router.send(client.identity, _MORE_NOBLOCK)
                router.send(item.frame, _NOBLOCK)
            except zmq.Again:
                self._backlogged.add(client.identity)
                return
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    self._drop_client(client.identity)  # the peer is gone
                    return
                raise
            out.popleft()
            if item.is_event:
                client.queued_events -= 1
                if item.seq is not None:
                    client.sent_cursor = item.seq
        client.last_sent = time.monotonic()
        self._backlogged.discard(client.identity)

    def _flush_backlog(self) -> None:
        for identity in list(self._backlogged):
            client = self._clients.get(identity)
            if client is None:
                self._backlogged.discard(identity)
            else:
                self._flush(client)

    def _drop_client(self, identity: bytes) -> None:
        client = self._clients.pop(identity, None)
        self._backlogged.discard(identity)
        self._catching_up.discard(identity)
        owner = self._by_client_id.get(client.client_id) if client and client.client_id else None
        if client is not None and client.client_id is not None and owner == identity:
            del self._by_client_id[client.client_id]

    def _housekeeping(self, now: float) -> None:
        """Heartbeats to idle subscribers (a send to a dead peer tells us it is gone)."""
        beat = None
        for client in list(self._clients.values()):
            if client.mode == "none":
                if now - client.last_seen > self.settings.anonymous_idle_s:
                    self._drop_client(client.identity)
                continue
            if now - client.last_sent >= self.settings.heartbeat_s and not client.out:
                if beat is None:
                    beat = self._codec.encode(
                        ephemeral_event(
                            "gateway.heartbeat",
                            self._head,
                            self.boot_id,
                            time.time(),
                            {"head_seq": self._head},
                        )
                    )
                client.queue(beat)
                self._flush(client)
