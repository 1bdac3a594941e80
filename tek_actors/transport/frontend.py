"""The frontend: the only owner of the gateway's ROUTER socket.

One thread runs `_loop`: it drains the socket, decodes and validates each frame, answers the
requests it owns (`hello`, `gateway.*`) itself, and routes `domain.verb` to the actor that serves
the domain as a `Ticket`. Actors answer through `Ticket.respond`, which posts back to this thread
through a queue and a wake-up socket pair; the journal posts committed events the same way, in
seq order. Everything that talks to the socket happens on this thread (ZeroMQ sockets are not
thread-safe), and nothing on this thread waits for an actor (a `sync.snapshot` resync gathers
the actors' states on a short-lived thread and posts them back).

Bounds: frames over `max_frame_bytes` get `too_large` (up to 4x the bound; past that the socket
itself drops the connection); every request has a deadline; each client's out-queue is bounded
(a client that falls behind drops back to reading the journal, see _clients.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import heapq
import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pykka
import zmq
from loguru import logger

from tek_actors.errors import (
    InvalidRequest,
    Overloaded,
    RequestTimeout,
    TekError,
    Unauthorized,
    Unavailable,
    UnknownType,
)
from tek_actors.runtime import Directory, Ticket
from tek_actors.store import EventRecord, Journal
from tek_actors.transport._clients import ClientSession
from tek_actors.transport._contract import FrontendSettings, GatewayControl
from tek_actors.transport._local import LocalRequests
from tek_actors.wire import (
    Codec,
    FrameError,
    Request,
    error_reply,
    ok_reply,
)

__all__ = ["Frontend", "FrontendSettings", "GatewayControl"]

_TOO_LARGE_FACTOR = 4
_LOCKED = Unauthorized("this endpoint needs authentication: send hello with your token first")


@dataclass(slots=True)
class _Pending:
    """A routed request. With an idem key, later copies of it wait here for the same answer."""

    identity: bytes
    request_id: Any
    actor: str
    deadline: float
    idem: str | None
    digest: bytes | None = None
    waiters: list[tuple[bytes, Any]] = field(default_factory=list)
    expired: bool = False  # its requester was told `timeout`; the actor is still on it


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
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.settings = settings
        self.bound_endpoint = settings.endpoint
        self._on_fatal = on_fatal
        self.boot_id = boot_id
        self._own_context = context is None
        self.context: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._journal = journal
        self._directory = directory
        self._control = control
        self._version = gateway_version
        self._codec = Codec(settings.max_frame_bytes)
        self._router: zmq.Socket[Any] | None = None
        self._thread: threading.Thread | None = None
        self._posts: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._signalled = False
        self._running = False
        self._clients: dict[bytes, ClientSession] = {}
        self._by_client_id: dict[str, bytes] = {}
        self._pending: dict[Ticket, _Pending] = {}
        self._deadlines: list[tuple[float, int, Ticket]] = []
        self._tiebreak = itertools.count()
        self._idem_running: dict[str, Ticket] = {}
        self._head = journal.head_seq
        self._accepting = True
        self._refuse_retry_ms = 1_000
        self._refuse_state = "restarting"  # what a refusal says the gateway is doing
        self._backlogged: set[bytes] = set()
        self._catching_up: set[bytes] = set()
        self._idle = threading.Condition()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.counters = {"requests": 0, "replies_dropped": 0, "lagged": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and start serving; raises Unavailable if the endpoint cannot be bound."""
        self._running = True
        self._thread = threading.Thread(target=self._run, name="tek-frontend", daemon=True)
        self._thread.start()
        self._started.wait(10.0)
        if self._start_error is not None:
            self._thread.join(5.0)
            self._running = False
            self._wake_r.close()
            self._wake_w.close()
            if self._own_context:
                self.context.term()
            raise Unavailable(
                f"cannot bind {self.settings.endpoint}: {self._start_error}"
            ) from self._start_error

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the loop, close the socket. Pending requests get `unavailable`."""
        if not self._running:
            return
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()
        if self._own_context:
            self.context.term()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _bind(self) -> zmq.Socket[Any]:
        router: zmq.Socket[Any] = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        router.setsockopt(zmq.SNDHWM, self.settings.sndhwm)
        router.setsockopt(zmq.RCVHWM, self.settings.sndhwm)
        router.setsockopt(zmq.MAXMSGSIZE, self.settings.max_frame_bytes * _TOO_LARGE_FACTOR)
        ivl = int(self.settings.heartbeat_s * 1000)
        router.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * 3)
        router.setsockopt(zmq.HEARTBEAT_TTL, ivl * 3)
        try:
            router.bind(self.settings.endpoint)
        except zmq.ZMQError:
            router.close(0)
            raise
        return router

    # -- thread-safe entry points ------------------------------------------------------------

    def _wake(self) -> None:
        if not self._signalled:
            self._signalled = True
            # A full pipe already holds a pending wake-up; a closed one means we are stopping.
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")

    def _post(self, item: tuple[Any, ...]) -> None:
        self._posts.put(item)
        self._wake()

    def respond(self, ticket: Ticket, ok: bool, value: Any) -> None:
        """Ticket.respond target: an actor's answer, posted to the frontend thread."""
        self._posts.put(("reply", ticket, ok, value))
        self._wake()

    def post_events(self, records: list[EventRecord]) -> None:
        """Journal hook: durable events, in seq order, right after their commit."""
        self._posts.put(("events", records))
        self._wake()

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """An ephemeral event for every client that follows its topic (never replayed)."""
        self._posts.put(("ephemeral", name, data))
        self._wake()

    def actor_down(self, name: str) -> None:
        """The supervisor lost `name`: requests it never started are answered `unavailable`."""
        self._posts.put(("down", name))
        self._wake()

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
            self._accepting, self._refuse_retry_ms, self._refuse_state = change
            return True
        applied = threading.Event()
        self._posts.put(("accepting", change, applied))
        self._wake()
        return applied.wait(timeout)

    def apply_limits(self, *, default_timeout_ms: int, client_queue_bound: int) -> None:
        """The limits that apply live. The settings object is swapped whole (one reference
        assignment), so the I/O thread reads either the old limits or the new ones; requests
        that arrive after this returns get the new ones."""
        self.settings = dataclasses.replace(
            self.settings,
            default_timeout_ms=default_timeout_ms,
            client_queue_bound=client_queue_bound,
        )

    def set_boot(self, boot_id: str) -> None:
        self._posts.put(("boot", boot_id))
        self._wake()

    def cancel_unstarted(self) -> None:
        """Answer `unavailable` to every routed request no actor has started yet."""
        self._posts.put(("cancel_unstarted",))
        self._wake()

    def wait_idle(self, *, timeout: float) -> bool:
        """Block until no routed request is pending (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def head_seq(self) -> int:
        return self._head

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._router = self._bind()
            self.bound_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        next_housekeeping = time.monotonic() + self.settings.heartbeat_s
        try:
            while self._running:
                timeout_ms = self._poll_timeout_ms(next_housekeeping)
                ready = dict(poller.poll(timeout_ms))
                if self._wake_r.fileno() in ready:
                    self._drain_posts()
                if self._router in ready:
                    self._drain_router()
                now = time.monotonic()
                if self._deadlines and self._deadlines[0][0] <= now:
                    self._expire(now)
                if self._backlogged:
                    self._flush_backlog()
                if self._catching_up:
                    self._advance_catchups()
                if now >= next_housekeeping:
                    self._housekeeping(now)
                    next_housekeeping = now + self.settings.heartbeat_s
        except Exception as exc:
            logger.opt(exception=True).error("the frontend loop crashed")
            self._shutdown_socket()
            self._on_fatal(exc)
        else:
            self._shutdown_socket()

    def _poll_timeout_ms(self, next_housekeeping: float) -> int:
        if self._backlogged or self._catching_up:
            return 5
        due = next_housekeeping
        if self._deadlines:
            due = min(due, self._deadlines[0][0])
        return max(0, int((due - time.monotonic()) * 1000) + 1)

    def _shutdown_socket(self) -> None:
        self._drain_posts()
        for ticket, pending in list(self._pending.items()):
            started = not ticket.cancel()
            self._answer_error(
                pending,
                Unavailable(
                    "the gateway is stopping",
                    retry_after_ms=1000,
                    details={"state": "stopping", "started": started},
                ),
            )
        self._pending.clear()
        self._idem_running.clear()
        if self._router is not None:
            self._router.close(0)
            self._router = None
        with self._idle:
            self._idle.notify_all()

    def _drain_posts(self) -> None:
        # Order matters: empty the pipe, then clear the flag, then read the queue. A poster that
        # saw the flag still set put its item before we read the queue; one that saw it clear
        # left a byte in the pipe. Either way nothing waits unseen.
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._signalled = False
        while True:
            try:
                post = self._posts.get_nowait()
            except queue.Empty:
                return
            kind = post[0]
            if kind == "reply":
                self._on_reply(post[1], post[2], post[3])
            elif kind == "events":
                self._on_events(post[1])
            elif kind == "ephemeral":
                self._on_ephemeral(post[1], post[2])
            elif kind == "down":
                self._on_actor_down(post[1])
            elif kind == "accepting":
                self._accepting, self._refuse_retry_ms, self._refuse_state = post[1]
                post[2].set()
            elif kind == "boot":
                self.boot_id = post[1]
            elif kind == "cancel_unstarted":
                state = self._refuse_state
                self._cancel_where(lambda p: True, f"the gateway is {state}", {"state": state})
            elif kind == "snapshots":
                client = self._clients.get(post[1])
                if client is not None:
                    self._send_snapshots(client, post[2])

    def _drain_router(self) -> None:
        assert self._router is not None
        self._unflushed = set()
        try:
            self._receive_burst(self._router)
        finally:
            self._flush_burst()

    def _receive_burst(self, router: zmq.Socket[Any]) -> None:
        for _ in range(10_000):  # bounded, so posts and deadlines are never starved
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            identity = frames[0]
            client = self._clients.get(identity)
            now = time.monotonic()
            if client is None:
                client = self._clients[identity] = ClientSession(identity, now)
            client.last_seen = now
            if len(frames) != 2:
                self._reply(
                    client,
                    error_reply(
                        None,
                        {
                            "code": "bad_frame",
                            "message": "a message must be exactly one frame, "
                            f"got {len(frames) - 1}",
                        },
                    ),
                )
                continue
            self.counters["requests"] += 1
            self._on_frame(client, frames[1])

    # -- requests ----------------------------------------------------------------------------

    def _on_frame(self, client: ClientSession, frame: bytes) -> None:
        if len(frame) > self.settings.max_frame_bytes:
            self._reply(
                client,
                error_reply(
                    None,
                    {
                        "code": "too_large",
                        "message": f"frame of {len(frame)} bytes is over the bound of "
                        f"{self.settings.max_frame_bytes}",
                        "details": {"size": len(frame), "max": self.settings.max_frame_bytes},
                    },
                ),
            )
            return
        locked = self.settings.token is not None and not client.authed
        try:
            request = self._codec.decode_request(frame)
        except FrameError as exc:
            # An unauthenticated peer learns nothing, not even what was wrong with its frame.
            error = _LOCKED if locked else exc.error
            self._reply(client, error_reply(exc.request_id, error.to_wire()))
            return
        if locked and request.type != "hello":
            self._reply_error(client, request.id, _LOCKED)
            return
        local = self.LOCAL.get(request.type)
        try:
            if local is not None:
                local(self, client, request)
            else:
                self._route(client, request)
        except TekError as err:
            self._reply_error(client, request.id, err)

    def _route(self, client: ClientSession, request: Request) -> None:
        domain = request.type.split(".", 1)[0]
        name = self._directory.route(domain) if "." in request.type else None
        if name is None:
            raise UnknownType(
                f"unknown message type {request.type!r}", details={"type": request.type}
            )
        digest = None
        if request.idem is not None:
            digest = hashlib.sha256(
                request.type.encode() + b"\0" + msgpack.packb(request.payload, use_bin_type=True)
            ).digest()
            record = self._journal.idem_lookup(request.idem)
            if record is not None:
                if record.type != request.type or record.digest != digest:
                    raise InvalidRequest(
                        "this idem key was already used for a different request",
                        details={"field": "idem", "first_type": record.type},
                    )
                self._reply(client, ok_reply(request.id, msgpack.unpackb(record.reply, raw=False)))
                return  # a completed request's answer needs no actor, even during a restart
        if not self._accepting:
            raise Unavailable(
                f"the gateway is {self._refuse_state}; retry shortly",
                retry_after_ms=self._refuse_retry_ms,
                details={"state": self._refuse_state},
            )
        if request.idem is not None:
            running = self._idem_running.get(request.idem)
            if running is not None:  # the first copy is still running: this one gets its answer
                first = self._pending[running]
                if first.digest != digest:
                    raise InvalidRequest(
                        "this idem key is in use by a different request that is still running",
                        details={"field": "idem", "first_type": running.type},
                    )
                first.waiters.append((client.identity, request.id))
                return
        ref = self._directory.lookup(name)
        if ref is None:
            raise self._down_error(name)
        if len(self._pending) >= 100_000:
            raise Overloaded("too many requests in flight", retry_after_ms=500)
        ticket = Ticket(
            request.type,
            request.payload,
            self.respond,
            client_id=client.client_id,
            idem=request.idem,
            idem_digest=digest,
        )
        timeout_s = (request.timeout_ms or self.settings.default_timeout_ms) / 1000
        deadline = time.monotonic() + timeout_s
        self._pending[ticket] = _Pending(
            client.identity, request.id, name, deadline, request.idem, digest
        )
        heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), ticket))
        if request.idem is not None:
            self._idem_running[request.idem] = ticket
        try:
            ref.tell(ticket)
        except pykka.ActorDeadError:
            self._on_actor_down(name)

    def _down_error(self, name: str) -> Unavailable:
        due = self._directory.retry_at(name)
        retry_ms = 500 if due is None else max(50, int((due - time.monotonic()) * 1000) + 50)
        state = self._directory.state_of(name) or "restarting"
        if state == "running":  # it came back between our lookup and now
            state = "restarting"
        return Unavailable(
            f"{name} is {state}; retry shortly",
            retry_after_ms=retry_ms,
            details={"actor": name, "state": state},
        )

    def _on_reply(self, ticket: Ticket, ok: bool, value: Any) -> None:
        pending = self._forget(ticket)
        if pending is None:
            return
        if pending.expired:
            self.counters["replies_dropped"] += 1
            logger.warning(
                "the reply to {} came after its deadline; only later copies of it "
                "(same idem) get it",
                ticket.type,
            )
        if ok:
            self._answer(pending, ok_reply(pending.request_id, value))
        else:
            error = value if isinstance(value, TekError) else Unavailable(str(value))
            self._answer_error(pending, error)
        if not self._pending:
            with self._idle:
                self._idle.notify_all()

    def _forget(self, ticket: Ticket) -> _Pending | None:
        pending = self._pending.pop(ticket, None)
        if pending is not None and pending.idem is not None:
            self._idem_running.pop(pending.idem, None)
        return pending

    def _answer(self, pending: _Pending, reply: dict[str, Any], *, waiters: bool = True) -> None:
        """The reply to the requester (unless it was already told `timeout`) and its copies."""
        if not pending.expired:
            client = self._clients.get(pending.identity)
            if client is not None:
                self._reply(client, reply)
                self._close_when_answered(client, besides=pending)
        if waiters:
            for identity, request_id in pending.waiters:
                other = self._clients.get(identity)
                if other is not None:
                    self._reply(other, {**reply, "re": request_id})

    def _unanswered(self, identity: bytes, besides: object = None) -> bool:
        """Whether a request `identity` sent (other than `besides`) still awaits its reply."""
        return any(
            p.identity == identity and not p.expired and p is not besides
            for p in self._pending.values()
        )

    def _answer_error(self, pending: _Pending, error: TekError, *, waiters: bool = True) -> None:
        self._answer(pending, error_reply(pending.request_id, error.to_wire()), waiters=waiters)

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, ticket = heapq.heappop(self._deadlines)
            pending = self._pending.get(ticket)
            if pending is None or pending.expired:
                continue
            if ticket.cancel():
                self._forget(ticket)
                self._answer_error(
                    pending,
                    RequestTimeout(
                        "the deadline passed before the request started; it will not run",
                        details={"started": False},
                    ),
                )
            else:
                # Still running: its requester hears `timeout` now; copies sent with the same
                # idem key keep waiting for the real answer.
                self._answer_error(
                    pending,
                    RequestTimeout(
                        "the deadline passed while the request was running; it may still complete "
                        "(resend it with the same idem key to learn how it ended)",
                        details={"started": True},
                    ),
                    waiters=False,
                )
                pending.expired = True
        if not self._pending:
            with self._idle:
                self._idle.notify_all()

    def _cancel_where(
        self, predicate: Callable[[_Pending], bool], why: str, details: dict[str, Any]
    ) -> None:
        for ticket, pending in list(self._pending.items()):
            if predicate(pending) and ticket.cancel():
                self._forget(ticket)
                self._answer_error(
                    pending,
                    Unavailable(
                        f"{why}; the request did not run",
                        retry_after_ms=self._refuse_retry_ms,
                        details={**details, "started": False},
                    ),
                )
        if not self._pending:
            with self._idle:
                self._idle.notify_all()

    def _on_actor_down(self, name: str) -> None:
        self._cancel_where(
            lambda p: p.actor == name,
            f"{name} is restarting",
            {"actor": name, "state": "restarting"},
        )
