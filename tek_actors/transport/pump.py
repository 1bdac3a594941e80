"""The router pump: the gateway's ROUTER socket, bytes in and bytes out per peer.

One thread runs `run`: it binds (behind the ZAP guard, see _auth.py), then polls the socket and
a wake-up pipe. Frames in go to the handler (`on_frame`) in bursts; frames out are queued per
peer and sent without blocking, the rest kept until the socket takes them. Other threads never
touch the socket: they `post` to the loop, and the handler takes posts on this thread
(`on_post`). It knows nothing of requests, actors or the journal: it imports zmq and `wire`.

Bounds, per peer: queued durable events are bounded in count and bytes (past either, the
handler is told the peer lags, and drops them: it can read them again from the journal); all
queued frames together are bounded in bytes (`peer_queue_bytes`): a peer that stops reading and
passes it is dropped, its queue freed.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq
from loguru import logger

from tek_actors.transport._auth import ServerAuth, ZapGuard
from tek_actors.wire import Codec, error_reply

__all__ = ["Peer", "PumpHandler", "PumpSettings", "RouterPump"]

_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.NOBLOCK | zmq.SNDMORE)
_TOO_LARGE_FACTOR = 4  # frames up to 4x the bound are read (and refused); past that, dropped
_BURST = 10_000  # frames read per wake-up, so posts are never starved


@dataclass(frozen=True)
class PumpSettings:
    endpoint: str
    auth: ServerAuth
    max_frame_bytes: int
    sndhwm: int
    heartbeat_s: float
    event_bound: int  # queued durable events per peer
    event_bytes: int  # their bytes
    peer_queue_bytes: int  # every queued frame of a peer


@dataclass(slots=True)
class _Out:
    frame: bytes
    seq: int | None  # a durable event's seq (it may be dropped and read again); else None


@dataclass(slots=True)
class Peer:
    """One routing id's connection, as the socket sees it."""

    identity: bytes
    last_seen: float
    last_sent: float = 0.0
    out: deque[_Out] = field(default_factory=deque)
    out_bytes: int = 0
    events: int = 0
    event_bytes: int = 0
    sent_seq: int = 0  # the last durable event handed to the socket
    leaving: bool = False  # forget it once its queue is sent (it said bye)


class PumpHandler(Protocol):
    def on_frame(self, peer: Peer, frame: bytes) -> None: ...
    def on_post(self, item: tuple[Any, ...]) -> None: ...
    def on_lagging(self, peer: Peer) -> None: ...
    def on_gone(self, identity: bytes) -> None: ...
    def on_tick(self, now: float) -> None: ...
    def on_stopping(self) -> None: ...
    def on_pace(self) -> None: ...


class RouterPump:
    def __init__(
        self, context: zmq.Context[Any], settings: PumpSettings, handler: PumpHandler
    ) -> None:
        self.context = context
        self.settings = settings
        self.bound_endpoint = settings.endpoint
        self.peers: dict[bytes, Peer] = {}
        self.counters = {"frames": 0, "dropped_peers": 0}
        self._handler = handler
        self._codec = Codec(settings.max_frame_bytes)
        self._router: zmq.Socket[Any] | None = None
        self._zap: ZapGuard | None = None
        self._posts: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._signalled = False
        self._running = False
        self._backlogged: set[bytes] = set()
        self._unflushed: set[bytes] | None = None
        self._polling_fast = False

    # -- any thread --------------------------------------------------------------------------

    def post(self, item: tuple[Any, ...]) -> None:
        """Hand `item` to the loop's thread (the handler's `on_post`)."""
        self._posts.put(item)
        if not self._signalled:
            self._signalled = True
            # A full pipe already holds a wake-up; a closed one means we are stopping.
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")

    def stop(self) -> None:
        self._running = False
        self.post(("stop",))

    # -- the loop's thread -------------------------------------------------------------------

    def run(self, started: Callable[[BaseException | None], None]) -> None:
        """Bind, report through `started`, and serve until `stop()`."""
        try:
            # The ZAP handler answers libzmq's handshakes on a thread of its own: it is up
            # before the socket binds, so no peer is ever let in unchecked.
            self._zap = ZapGuard(self.context, self.settings.auth)
            self._router = self._bind(self._zap)
            self.bound_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException as exc:
            self._close()
            started(exc)
            return
        self._running = True
        started(None)
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        next_tick = time.monotonic() + self.settings.heartbeat_s
        try:
            while self._running:
                wait_ms = 5 if self._backlogged or self._polling_fast else None
                due_ms = max(0, int((next_tick - time.monotonic()) * 1000) + 1)
                ready = dict(poller.poll(due_ms if wait_ms is None else min(wait_ms, due_ms)))
                if self._wake_r.fileno() in ready:
                    self._drain_posts()
                if self._router in ready:
                    self._drain_router()
                if self._backlogged:
                    self._flush_backlog()
                if self._polling_fast:
                    self._handler.on_pace()
                now = time.monotonic()
                if now >= next_tick:
                    self._handler.on_tick(now)
                    next_tick = now + self.settings.heartbeat_s
        finally:
            self._drain_posts()
            self._handler.on_stopping()  # its last replies go out before the socket closes
            self._close()

    def poll_fast(self, on: bool) -> None:
        """While on, the loop wakes every few ms even without traffic and calls the handler's
        `on_pace` (catch-up: the next chunk once a client has drained the last)."""
        self._polling_fast = on

    def _bind(self, zap: ZapGuard) -> zmq.Socket[Any]:
        router: zmq.Socket[Any] = self.context.socket(zmq.ROUTER)
        s = self.settings
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        router.setsockopt(zmq.SNDHWM, s.sndhwm)
        router.setsockopt(zmq.RCVHWM, s.sndhwm)
        router.setsockopt(zmq.MAXMSGSIZE, s.max_frame_bytes * _TOO_LARGE_FACTOR)
        ivl = int(s.heartbeat_s * 1000)
        router.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * 3)
        router.setsockopt(zmq.HEARTBEAT_TTL, ivl * 3)
        zap.secure(router)
        try:
            router.bind(s.endpoint)
        except zmq.ZMQError:
            router.close(0)
            raise
        return router

    def _close(self) -> None:
        if self._router is not None:
            self._router.close(0)
            self._router = None
        if self._zap is not None:
            self._zap.stop()
            self._zap = None
        self._wake_r.close()
        self._wake_w.close()

    def _drain_posts(self) -> None:
        # Order matters: empty the pipe, then clear the flag, then read the queue. A poster that
        # saw the flag still set put its item before we read the queue; one that saw it clear
        # left a byte in the pipe. Either way nothing waits unseen.
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass
        self._signalled = False
        while True:
            try:
                item = self._posts.get_nowait()
            except queue.Empty:
                return
            if item[0] != "stop":
                self._handler.on_post(item)

    def _drain_router(self) -> None:
        assert self._router is not None
        self._unflushed = set()
        try:
            for _ in range(_BURST):
                try:
                    frames = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    return
                self._on_message(frames)
        finally:
            unflushed, self._unflushed = self._unflushed, None
            for identity in unflushed:
                peer = self.peers.get(identity)
                if peer is not None:
                    self._flush(peer)

    def _on_message(self, frames: list[bytes]) -> None:
        identity = frames[0]
        now = time.monotonic()
        peer = self.peers.get(identity)
        if peer is None:
            peer = self.peers[identity] = Peer(identity, now)
        peer.last_seen = now
        peer.leaving = False  # it said bye, then went on: a new session on the same peer
        self.counters["frames"] += 1
        if len(frames) != 2:
            message = f"a message must be exactly one frame, got {len(frames) - 1}"
            error: dict[str, Any] = {"code": "bad_frame", "message": message}
            self.send(peer, self._codec.encode(error_reply(None, error)))
            return
        frame = frames[1]
        if len(frame) > self.settings.max_frame_bytes:
            bound = self.settings.max_frame_bytes
            error = {
                "code": "too_large",
                "message": f"frame of {len(frame)} bytes is over the bound of {bound}",
                "details": {"size": len(frame), "max": bound},
            }
            self.send(peer, self._codec.encode(error_reply(None, error)))
            return
        self._handler.on_frame(peer, frame)

    # -- sending -----------------------------------------------------------------------------

    def send(self, peer: Peer, frame: bytes, *, seq: int | None = None) -> None:
        """Queue `frame` for `peer` (a durable event's `seq` makes it droppable) and send it
        now, or at the end of the burst being read."""
        peer.out.append(_Out(frame, seq))
        peer.out_bytes += len(frame)
        if seq is not None:
            peer.events += 1
            peer.event_bytes += len(frame)
            s = self.settings
            if peer.events > s.event_bound or peer.event_bytes > s.event_bytes:
                self._handler.on_lagging(peer)
        if peer.out_bytes > self.settings.peer_queue_bytes:
            self._drop_stuck(peer)
            return
        if self._unflushed is not None:
            self._unflushed.add(peer.identity)
        else:
            self._flush(peer)

    def drop_events(self, peer: Peer) -> int:
        """Forget `peer`'s queued durable events (replies stay); how many there were. The peer
        has been given every event up to `peer.sent_seq`."""
        kept = deque(o for o in peer.out if o.seq is None)
        dropped = len(peer.out) - len(kept)
        peer.out = kept
        peer.out_bytes -= peer.event_bytes
        peer.events = peer.event_bytes = 0
        return dropped

    def flush(self, peer: Peer) -> None:
        self._flush(peer)

    def _flush(self, peer: Peer) -> None:
        router = self._router
        if router is None:
            return
        out = peer.out
        while out:
            item = out[0]
            try:
                # Two plain sends with int flags: send_multipart costs twice as much per
                # message on this path. For a ROUTER, refusal (EAGAIN, unknown peer) comes at
                # the first part, before anything was queued.
                router.send(peer.identity, _MORE_NOBLOCK)
                router.send(item.frame, _NOBLOCK)
            except zmq.Again:
                self._backlogged.add(peer.identity)
                return
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    self.forget(peer.identity)  # the peer is gone
                    self._handler.on_gone(peer.identity)
                    return
                raise
            out.popleft()
            peer.out_bytes -= len(item.frame)
            if item.seq is not None:
                peer.events -= 1
                peer.event_bytes -= len(item.frame)
                peer.sent_seq = item.seq
        peer.last_sent = time.monotonic()
        self._backlogged.discard(peer.identity)
        if peer.leaving:
            self.forget(peer.identity)

    def _flush_backlog(self) -> None:
        for identity in list(self._backlogged):
            peer = self.peers.get(identity)
            if peer is None:
                self._backlogged.discard(identity)
            else:
                self._flush(peer)

    def _drop_stuck(self, peer: Peer) -> None:
        self.counters["dropped_peers"] += 1
        logger.warning(
            "a client ({!r}) stopped reading: {} MiB of replies waited for it; its session is "
            "dropped (a client that resends under its idem keys gets the answers again)",
            peer.identity[:32],
            peer.out_bytes >> 20,
        )
        self.forget(peer.identity)
        self._handler.on_gone(peer.identity)

    def forget_when_sent(self, peer: Peer) -> None:
        """Forget `peer` once everything queued to it is sent (now, if nothing is)."""
        peer.leaving = True
        self._flush(peer)

    def forget(self, identity: bytes) -> None:
        self.peers.pop(identity, None)
        self._backlogged.discard(identity)
