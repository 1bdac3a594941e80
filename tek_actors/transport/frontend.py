"""The frontend: the gateway's one socket, in three pieces with one owner each.

    RouterPump (pump.py)        the ROUTER socket: bytes in and out per peer, byte bounds
    Requests (lifecycle.py)     routing, tickets, deadlines, pending requests, the idem gate
    Feed (feed.py)              durable events live / catch-up / snapshot resync, ephemerals

All three run on the pump's thread, which is the only one that touches the socket (ZeroMQ
sockets are not thread-safe) and never waits for an actor or touches SQLite: the journal is read
by the JournalReader's thread (_reader.py), and a snapshot resync gathers the actors' states on
a short-lived thread; results come back as posts. Actors answer through `Ticket.respond` and the
journal hands committed events over with `post_events`: both are posts too.

This class joins them: it decodes each frame, refuses one over its type's bound before keeping
anything of it, answers the requests it owns (`hello`, `bye`, `gateway.*`: _local.py) and
routes the rest to the lifecycle.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from loguru import logger

from tek_actors.errors import Overloaded, TekError, TooLarge, Unavailable
from tek_actors.runtime import Clock, Directory, RealClock, Ticket
from tek_actors.store import EventRecord, Journal
from tek_actors.transport._contract import FrontendSettings, GatewayControl
from tek_actors.transport._local import LocalRequests
from tek_actors.transport._reader import JournalReader
from tek_actors.transport.feed import Feed
from tek_actors.transport.lifecycle import Requests
from tek_actors.transport.pump import Peer, PumpSettings, RouterPump
from tek_actors.wire import Codec, FrameError, Request, error_reply
from tek_actors.wire.bounds import payload_bound

__all__ = ["Frontend", "FrontendSettings", "GatewayControl"]

_MAX_HELD = 10_000  # frames of one peer waiting behind its read


class Frontend(LocalRequests):
    """Binds `settings.endpoint` and serves it until `stop()`.

    It creates (and terms) its own zmq context unless one is given; `context` is what an
    in-process client must use for an `inproc://` endpoint.
    """

    def __init__(
        self,
        *,
        context: zmq.Context[Any] | None = None,
        settings: FrontendSettings,
        journal: Journal,
        directory: Directory,
        control: GatewayControl,
        boot_id: str,
        gateway_version: str,
        clock: Clock | None = None,
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.settings = settings
        self._on_fatal = on_fatal
        self._own_context = context is None
        self.context: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._own_clock = clock is None
        self._clock = clock or RealClock()
        self._control = control
        self._version = gateway_version
        self._codec = Codec(settings.max_frame_bytes)
        self.pump = RouterPump(
            self.context,
            PumpSettings(
                endpoint=settings.endpoint,
                auth=settings.auth,
                max_frame_bytes=settings.max_frame_bytes,
                sndhwm=settings.sndhwm,
                heartbeat_s=settings.heartbeat_s,
                event_bound=settings.client_queue_bound,
                event_bytes=settings.client_queue_bytes,
                peer_queue_bytes=settings.peer_queue_bytes,
            ),
            self,
        )
        self._reader = JournalReader(self.pump.post)
        self.requests = Requests(
            directory=directory,
            journal=journal,
            reader=self._reader,
            clock=self._clock,
            answer=self._answer,
            respond=self.respond,
            wake=lambda: self.pump.post(("expire",)),
            released=self._release,
            max_pending=settings.max_pending,
            max_pending_bytes=settings.max_pending_bytes,
        )
        self.requests.default_timeout_ms = settings.default_timeout_ms
        self.feed = Feed(
            pump=self.pump,
            reader=self._reader,
            journal=journal,
            codec=self._codec,
            sync_states=control.sync_states,
            replay_chunk=settings.replay_chunk,
            boot_id=boot_id,
            on_answered=self._answered,
        )
        self._closing: dict[bytes, list[Any]] = {}  # peers that said bye -> bye's request ids
        # Frames of a peer whose idem look-up or hello read is out wait here, in order.
        self._held: dict[bytes, deque[tuple[Request, int]]] = {}
        self.held_bytes = 0
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._idle = threading.Condition()
        self.counters = {"requests": 0, "replies_dropped": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and start serving; raises Unavailable if the endpoint cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="tek-frontend", daemon=True)
        self._thread.start()
        self._started.wait(10.0)
        if self._start_error is not None:
            self._thread.join(5.0)
            self._free()
            raise Unavailable(
                f"cannot bind {self.settings.endpoint}: {self._start_error}"
            ) from self._start_error

    def _run(self) -> None:
        def started(error: BaseException | None) -> None:
            self._start_error = error
            self._started.set()

        try:
            self.pump.run(started)
        except Exception as exc:
            logger.opt(exception=True).error("the frontend loop crashed")
            self._on_fatal(exc)

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the loop, close the socket. Pending requests get `unavailable`."""
        if self._thread is None or not self._thread.is_alive():
            return
        self.pump.stop()
        self._thread.join(timeout)
        self._free()

    def _free(self) -> None:
        self._reader.close()
        if self._own_clock:
            self._clock.close()
        if self._own_context:
            self.context.term()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def bound_endpoint(self) -> str:
        return self.pump.bound_endpoint

    @property
    def boot_id(self) -> str:
        return self.feed.boot_id

    # -- thread-safe entry points ------------------------------------------------------------

    def respond(self, ticket: Ticket, ok: bool, value: Any) -> None:
        """Ticket.respond target: an actor's answer, posted to the frontend thread."""
        self.pump.post(("reply", ticket, ok, value))

    def post_events(self, records: list[EventRecord]) -> None:
        """Journal hook: durable events, in seq order, right after their commit."""
        self.pump.post(("events", records))

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """An ephemeral event for every client that follows its topic (never replayed)."""
        self.pump.post(("ephemeral", name, data))

    def actor_down(self, name: str) -> None:
        """The supervisor lost `name`: requests it never started are answered `unavailable`."""
        self.pump.post(("down", name))

    def set_accepting(
        self,
        accepting: bool,
        *,
        retry_after_ms: int = 1_000,
        state: str = "restarting",
        timeout: float = 5.0,
    ) -> bool:
        """While not accepting, new work is refused with `unavailable`, `retry_after_ms` and
        `details.state` = `state` ("starting", "restarting" or "stopping": what the gateway is
        doing). Blocks until the I/O thread has taken the change in, so every request it reads
        after this returns is treated the new way; False if that took over `timeout` (the loop
        is stuck). Before `start()` (or after the loop ended) it is set at once."""
        change = (accepting, retry_after_ms, state)
        if not self.alive or threading.current_thread() is self._thread:
            self._accept(change)
            return True
        applied = threading.Event()
        self.pump.post(("accepting", change, applied))
        return applied.wait(timeout)

    def _accept(self, change: tuple[bool, int, str]) -> None:
        r = self.requests
        r.accepting, r.refuse_retry_ms, r.refuse_state = change

    def apply_limits(self, *, default_timeout_ms: int, client_queue_bound: int) -> None:
        """The limits that apply live; requests that arrive after the loop takes the post in
        get the new ones."""
        self.settings = dataclasses.replace(
            self.settings,
            default_timeout_ms=default_timeout_ms,
            client_queue_bound=client_queue_bound,
        )
        self.pump.post(("limits", default_timeout_ms, client_queue_bound))

    def set_boot(self, boot_id: str) -> None:
        self.pump.post(("boot", boot_id))

    def cancel_unstarted(self) -> None:
        """Answer `unavailable` to every routed request no actor has started yet."""
        self.pump.post(("cancel_unstarted",))

    def wait_idle(self, *, timeout: float) -> bool:
        """Block until no routed request is pending (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.requests.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    @property
    def clients(self) -> int:
        return len(self.pump.peers)

    @property
    def head_seq(self) -> int:
        return self.feed.head

    # -- the pump's handler (its thread) -----------------------------------------------------

    def on_frame(self, peer: Peer, frame: bytes) -> None:
        self.counters["requests"] += 1
        try:
            request = self._codec.decode_request(frame)
        except FrameError as exc:
            self._send(peer, error_reply(exc.request_id, exc.error.to_wire()))
            return
        bound = payload_bound(request.type, self.settings.max_frame_bytes)
        if len(frame) > bound:  # refused before anything of it is kept
            error = TooLarge(
                f"a {request.type} request is at most {bound} bytes; this one is {len(frame)}",
                details={"size": len(frame), "max": bound, "type": request.type},
            )
            self._send(peer, error_reply(request.id, error.to_wire()))
            return
        held = self._held.get(peer.identity)
        if held is None:
            self._dispatch(peer, request, len(frame))
        elif (
            len(held) >= _MAX_HELD or self.held_bytes + len(frame) > self.settings.max_pending_bytes
        ):
            busy = Overloaded(
                "too many requests wait behind a read; retry shortly", retry_after_ms=200
            )
            self._send(peer, error_reply(request.id, busy.to_wire()))
        else:
            held.append((request, len(frame)))
            self.held_bytes += len(frame)

    def _dispatch(self, peer: Peer, request: Request, size: int) -> None:
        """Serve `request` (local) or route it; if that leaves a read out for the peer (an idem
        look-up, a hello), its later frames are held until `_release`."""
        local = self.LOCAL.get(request.type)
        if local is None:
            sub = self.feed.subs.get(peer.identity)
            client_id = sub.client_id if sub is not None else None
            self.requests.route(peer.identity, client_id, request, size)
        else:
            try:
                local(self, peer, request)
            except TekError as err:
                self._send(peer, error_reply(request.id, err.to_wire()))
        if self._busy(peer.identity):
            self._held.setdefault(peer.identity, deque())

    def _busy(self, identity: bytes) -> bool:
        return self.requests.looking_up(identity) or identity in self.feed.hellos_out

    def _release(self, identity: bytes) -> None:
        """The peer's read is done: its held frames go on, in order, until one waits again."""
        held = self._held.get(identity)
        if held is None or self._busy(identity):
            return
        del self._held[identity]
        while held:
            request, size = held.popleft()
            self.held_bytes -= size
            peer = self.pump.peers.get(identity)
            if peer is None:
                continue  # it left meanwhile: nobody to answer
            self._dispatch(peer, request, size)
            if identity in self._held:
                self._held[identity].extend(held)
                return

    def on_post(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "reply":
            self.requests.on_reply(item[1], item[2], item[3])
            self._notify_idle()
        elif kind == "events":
            self.feed.on_events(item[1])
        elif kind == "read":
            item[1](item[2])
        elif kind == "expire":
            self.requests.expire()
            self._notify_idle()
        elif kind == "ephemeral":
            self.feed.ephemeral(item[1], item[2])
        elif kind == "down":
            self.requests.actor_down(item[1])
            self._notify_idle()
        elif kind == "accepting":
            self._accept(item[1])
            item[2].set()
        elif kind == "limits":
            self.requests.default_timeout_ms = item[1]
            self.pump.settings = dataclasses.replace(self.pump.settings, event_bound=item[2])
        elif kind == "boot":
            self.feed.boot_id = item[1]
        elif kind == "cancel_unstarted":
            state = self.requests.refuse_state
            self.requests.cancel_where(lambda p: True, f"the gateway is {state}", {"state": state})
            self._notify_idle()
        elif kind == "snapshots":
            self.feed.on_snapshots(item[1], item[2], item[3])

    def on_lagging(self, peer: Peer) -> None:
        self.feed.on_lagging(peer)

    def on_gone(self, identity: bytes) -> None:
        self.feed.forget(identity)
        self._closing.pop(identity, None)

    def on_tick(self, now: float) -> None:
        self.feed.tick(now, self.settings.heartbeat_s)
        idle_s = self.settings.anonymous_idle_s
        for identity, peer in list(self.pump.peers.items()):
            if (
                identity not in self.feed.subs
                and now - peer.last_seen > idle_s
                and not self.requests.unanswered(identity)
            ):
                self.pump.forget(identity)
                self.on_gone(identity)

    def on_pace(self) -> None:
        self.feed.advance()

    def on_stopping(self) -> None:
        self.requests.stopping()
        stopping = Unavailable(
            "the gateway is stopping", retry_after_ms=1000, details={"state": "stopping"}
        )
        for identity, held in self._held.items():
            peer = self.pump.peers.get(identity)
            while held and peer is not None:
                self._send(peer, error_reply(held.popleft()[0].id, stopping.to_wire()))
        self._held.clear()
        self._notify_idle()

    # -- replies -----------------------------------------------------------------------------

    def _answer(self, identity: bytes, reply: dict[str, Any]) -> None:
        """A reply from the lifecycle to `identity`, if it is still connected."""
        peer = self.pump.peers.get(identity)
        if peer is None:
            self.counters["replies_dropped"] += 1
            return
        self._send(peer, reply)
        self._answered(identity)

    def _answered(self, identity: bytes) -> None:
        """A reply to `identity` went out: held frames may go on; if it said bye, bye may be
        due now."""
        if identity in self._held:
            self._release(identity)
        peer = self.pump.peers.get(identity)
        if peer is not None and identity in self._closing:
            self._close_when_answered(peer)

    def _send(self, peer: Peer, reply: dict[str, Any]) -> None:
        try:
            frame = self._codec.encode(reply)
        except TekError as err:
            frame = self._codec.encode(error_reply(reply.get("re"), err.to_wire()))
        self.pump.send(peer, frame)

    def _notify_idle(self) -> None:
        if not self.requests.pending:
            with self._idle:
                self._idle.notify_all()
