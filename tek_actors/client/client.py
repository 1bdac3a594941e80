"""Client: a blocking client of the gateway that survives the gateway's restarts.

One I/O thread owns the connection (ZeroMQ sockets are not thread-safe); `call`, `submit` and
`next_event` may be used from any thread. What it does for the caller:

- Matches replies to requests and rebuilds typed errors (`tek_actors.errors`) from error codes.
- Heartbeats: pings when nothing arrived for `heartbeat_s`; after `silence_s` of silence it calls
  the gateway gone, drops the socket and reconnects with backoff (100 ms doubling to 5 s).
- Resumes: after a reconnect or when the gateway's boot id changes, it says `hello` again with the
  seq of the last event it delivered, so the event stream continues with no gap and no duplicate,
  and it resends every request that had no answer.
- Never loses a state-changing request: each gets an idempotency key, is kept in the durable
  outbox (if one is configured) until the gateway answered it for good, is retried on
  `unavailable`/`overloaded`/`timeout`, and is held (not sent) between
  `gateway.shutdown_imminent` and the gateway's return under a new boot id.

A request type is read-only when its verb is one of READ_ONLY_VERBS (`ping`, `status`, `get`,
`list`, `logs`, ...); every other non-`gateway.*` type is state-changing.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tek_actors import _logger as logger  # loguru loads at the first record
from tek_actors.client._calls import READ_ONLY_VERBS, RETRYABLE, Call, is_state_changing
from tek_actors.client._where import endpoint_of, locate
from tek_actors.errors import (
    ConnectionLost,
    RequestTimeout,
    TekError,
    Unauthorized,
    error_from_wire,
)
from tek_actors.home import TekHome
from tek_actors.transport import ClientAuth, Connection
from tek_actors.wire import Codec

if TYPE_CHECKING:
    from tek_actors.client.outbox import Outbox

__all__ = ["READ_ONLY_VERBS", "Client", "is_state_changing"]


class Client:
    """A connection to one gateway: `Client(endpoint)` or `Client(home=...)`."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        home: str | TekHome | None = None,
        context: Any = None,
        client_id: str | None = None,
        token: str | None = None,
        auth: ClientAuth | None = None,
        outbox: str | Path | None = None,
        timeout: float = 30.0,
        heartbeat_s: float = 1.0,
        silence_s: float = 3.0,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        event_queue_bound: int = 100_000,
        max_frame_bytes: int = 1 << 20,
    ) -> None:
        self._home, self.endpoint, self._auth = locate(endpoint, home, token, auth)
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self._context = context
        self._codec = Codec(max_frame_bytes)
        self._heartbeat_s = heartbeat_s
        self._silence_s = silence_s
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._outbox: Outbox | None = None
        if outbox is not None:
            from tek_actors.client.outbox import Outbox  # sqlite3: only for a durable outbox

            self._outbox = Outbox(outbox)
        self._settled = threading.Condition()
        self._commands: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._events: queue.Queue[dict[str, Any]] = queue.Queue(event_queue_bound)
        self._ids = itertools.count(1)
        self._in_flight: dict[int, Call] = {}
        self._waiting: list[Call] = []
        self._conn: Connection | None = None
        self._closing = threading.Event()
        self._last_rx = 0.0
        self._ping_out = False
        self._boot: str | None = None
        self._held_boot: str | None = None
        # Until a ping says the gateway serves, state-changing calls wait (in order): one that a
        # starting gateway refused would otherwise be overtaken by the next, sent as it flipped.
        self._serving = False
        self._gate_at = 0.0  # when to ask again while it does not serve
        self._subscription: dict[str, Any] | None = None
        self._last_seq: int | None = None
        self._resync_from: int | None = None
        self._backoff = reconnect_min_s
        self._next_connect = 0.0
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="tek-client-io", daemon=True)
        self._thread.start()
        if self._outbox is not None:
            for entry in self._outbox.pending():  # left over from an earlier run: resend
                self._enqueue(Call(entry.type, entry.payload, entry.idem, None, durable=True))

    # -- the caller's side -------------------------------------------------------------------

    def submit(
        self,
        type_name: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idem: str | None = None,
    ) -> Future[Any]:
        """Send a request; the future holds the result or the TekError.

        A state-changing request gets an idem key; with an outbox it is kept on disk first and
        retried until the gateway answers it for good, whatever `timeout` says.
        """
        payload = payload or {}
        changing = is_state_changing(type_name)
        if changing and idem is None:
            idem = uuid.uuid4().hex
        self._codec.encode(
            {"v": 1, "id": 0, "type": type_name, "payload": payload, "idem": idem}
        )  # raises TooLarge / InvalidRequest up front
        durable = changing and self._outbox is not None
        if durable:
            assert self._outbox is not None and idem is not None
            self._outbox.put(idem, type_name, payload)
        wait = self.timeout if timeout is None else timeout
        deadline = None if durable else time.monotonic() + wait
        call = Call(type_name, payload, idem, deadline, durable=durable)
        self._enqueue(call)
        return call.future

    def call(
        self,
        type_name: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idem: str | None = None,
    ) -> Any:
        """Send a request and wait for its result; raises the TekError the gateway answered."""
        wait = self.timeout if timeout is None else timeout
        future = self.submit(type_name, payload, timeout=wait, idem=idem)
        try:
            return future.result(wait + 1.0)
        except FutureTimeout:
            raise RequestTimeout(
                f"{type_name} got no answer within {wait}s"
                + ("; it stays in the outbox" if self._outbox else ""),
                details={"started": None},
            ) from None

    def ping(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self.call("gateway.ping", timeout=timeout)  # type: ignore[no-any-return]

    def status(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self.call("gateway.status", timeout=timeout)  # type: ignore[no-any-return]

    def hello(
        self,
        *,
        since_seq: int | None = None,
        topics: list[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Subscribe to events after `since_seq` (None: live only) on `topics` (None: all)."""
        payload: dict[str, Any] = {
            "client_id": self.client_id,
            "since_seq": since_seq,
            "topics": topics,
        }
        return self.call("hello", payload, timeout=timeout)  # type: ignore[no-any-return]

    def next_event(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event (durable in seq order, once each; ephemeral as they come), or None."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def events(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Events until none arrives within `timeout` (forever with None)."""
        while True:
            event = self.next_event(timeout)
            if event is None:
                return
            yield event

    @property
    def last_seq(self) -> int | None:
        """The seq of the last durable event this client delivered."""
        return self._last_seq

    @property
    def outbox_pending(self) -> int:
        return len(self._outbox) if self._outbox is not None else 0

    def wait_outbox_empty(self, *, timeout: float) -> bool:
        """Block until every kept request was answered for good (True) or `timeout` passes."""
        with self._settled:
            return self._settled.wait_for(lambda: self.outbox_pending == 0, timeout)

    @property
    def boot_id(self) -> str | None:
        return self._boot

    def close(self) -> None:
        """Stop the I/O thread and close the socket. Unanswered outbox requests stay on disk."""
        if self._closing.is_set():
            return
        self._closing.set()
        conn = self._conn
        if conn is not None:
            conn.wake()
        self._thread.join(10.0)
        if self._outbox is not None:
            self._outbox.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _enqueue(self, call: Call) -> None:
        if self._closing.is_set():
            call.future.set_exception(ConnectionLost("the client is closed"))
            return
        self._commands.put(call)
        conn = self._conn
        if conn is not None:
            conn.wake()

    def _hello_payload(self, since_seq: int | None) -> dict[str, Any]:
        topics = self._subscription["topics"] if self._subscription is not None else []
        payload: dict[str, Any] = {
            "client_id": self.client_id,
            "since_seq": since_seq,
            "topics": topics,
        }
        return payload

    # -- the I/O thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                try:
                    self._step()
                except ConnectionLost as exc:
                    self._drop_connection(str(exc))
        except Exception:
            logger.opt(exception=True).error("the client I/O thread crashed")
        finally:
            self._shutdown()

    def _step(self) -> None:
        now = time.monotonic()
        self._take_commands()  # first: a caller's hello must be seen before connecting
        if self._conn is None and now >= self._next_connect:
            self._connect()
        self._pump(now)
        self._expire(now)
        if self._conn is None:
            self._closing.wait(max(0.0, min(self._next_connect - now, 0.05)))
            return
        self._conn.wait(self._wait_time())
        if self._conn.refused is not None:
            self._refused(self._conn.refused)
            return
        self._receive()
        self._heartbeat()

    def _refused(self, why: str) -> None:
        """The gateway refused our credentials: every call fails now with `unauthorized` (an
        outbox keeps its entries), and we try again later (the key may be authorized since)."""
        error = Unauthorized(why)
        for call in [*self._in_flight.values(), *self._waiting]:
            if not call.internal:
                self._fail(call, error)
        self._in_flight.clear()
        self._waiting.clear()
        self._drop_connection(why)

    def _connect(self) -> None:
        if self._home is not None:
            self.endpoint = endpoint_of(self._home) or self.endpoint
        try:
            self._conn = Connection(
                self.endpoint,
                identity=f"c-{self.client_id}".encode()[:255],
                context=self._context,
                heartbeat_s=self._heartbeat_s,
                max_frame_bytes=self._codec.max_frame_bytes,
                auth=self._auth,
            )
        except ConnectionLost as exc:
            logger.debug("connect failed: {}", exc)
            self._schedule_reconnect()
            return
        self._last_rx = time.monotonic()
        self._ping_out = False
        self._resend_all()

    def _schedule_reconnect(self) -> None:
        self._next_connect = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._reconnect[1])

    def _drop_connection(self, why: str) -> None:
        logger.debug("dropping the connection to {}: {}", self.endpoint, why)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ping_out = False
        for call in self._in_flight.values():  # resent after the reconnect
            if not call.internal:
                call.sent = False
                self._waiting.append(call)
        self._in_flight.clear()
        self.reconnects += 1
        self._schedule_reconnect()

    def _resend_all(self) -> None:
        """After a reconnect or a new boot: hello again, then every unanswered request."""
        calls = [c for c in self._in_flight.values() if not c.internal]
        self._in_flight.clear()
        self._ping_out = False
        # Always hello (unless the caller's own hello is about to go): it authenticates (tcp),
        # and even with no topics the gateway then sends heartbeats and shutdown notices.
        if not any(c.type == "hello" for c in (*calls, *self._waiting)):
            since = self._last_seq if self._last_seq is not None else self._resync_from
            self._send_internal("hello", self._hello_payload(since))
        self._serving = False
        self._send_internal("gateway.ping", {})
        for call in calls:
            call.sent = False
            call.retry_at = 0.0
        self._waiting = calls + self._waiting

    def _take_commands(self) -> None:
        while True:
            try:
                call = self._commands.get_nowait()
            except queue.Empty:
                return
            self._waiting.append(call)

    def _pump(self, now: float) -> None:
        if self._conn is None or not self._waiting:
            return
        keep, gated = [], False  # a call behind one the gate holds keeps its place behind it
        for call in self._waiting:
            changes = is_state_changing(call.type)
            gated = gated or (not self._serving and changes and not call.internal)
            held = (self._held_boot is not None and changes) or (gated and not call.internal)
            if held or call.retry_at > now or not self._send(call):
                keep.append(call)
        self._waiting = keep

    def _send(self, call: Call) -> bool:
        assert self._conn is not None
        if call.type == "hello" and not call.internal:
            self._subscribe(call)
        request_id = next(self._ids)
        envelope: dict[str, Any] = {
            "v": 1,
            "id": request_id,
            "type": call.type,
            "payload": call.payload,
        }
        if call.idem is not None:
            envelope["idem"] = call.idem
        if call.deadline is not None:
            envelope["timeout_ms"] = max(1, int((call.deadline - time.monotonic()) * 1000))
        if not self._conn.send(self._codec.encode(envelope)):
            return False
        call.sent = True
        self._in_flight[request_id] = call
        return True

    def _subscribe(self, call: Call) -> None:
        """The caller's hello: from its first send on, it is this client's subscription."""
        if call.attempts == 0:
            self._subscription = {"topics": call.payload.get("topics")}
            self._resync_from = call.payload.get("since_seq")
            self._last_seq = self._resync_from
        else:  # a resend after a reconnect resumes from what was delivered
            call.payload = {**call.payload, "since_seq": self._last_seq}
        call.attempts += 1

    def _send_internal(self, type_name: str, payload: dict[str, Any]) -> None:
        call = Call(
            type_name,
            payload,
            None,
            time.monotonic() + self._silence_s,
            durable=False,
            internal=True,
        )
        if type_name == "gateway.ping":
            self._ping_out = True
        if not self._send(call):
            self._waiting.insert(0, call)

    def _wait_time(self) -> float:
        wait = self._heartbeat_s / 2
        if self._waiting:
            wait = min(wait, max(0.0, min(c.retry_at for c in self._waiting) - time.monotonic()))
        return max(wait, 0.001)

    def _expire(self, now: float) -> None:
        for request_id, call in list(self._in_flight.items()):
            if call.deadline is not None and now > call.deadline + 1.0:
                del self._in_flight[request_id]
                self._fail(call, RequestTimeout(f"{call.type} got no answer in time"))
        expired = [c for c in self._waiting if c.deadline is not None and now > c.deadline]
        for call in expired:
            self._waiting.remove(call)
            self._fail(call, RequestTimeout(f"{call.type} could not be sent in time"))

    def _heartbeat(self) -> None:
        now = time.monotonic()
        silent = now - self._last_rx
        if silent > self._silence_s:
            self._drop_connection(f"no word from the gateway for {silent:.1f}s")
        elif self._conn is None or self._ping_out:
            return
        elif silent > self._heartbeat_s or (not self._serving and now >= self._gate_at):
            self._send_internal("gateway.ping", {})

    def _receive(self) -> None:
        while self._conn is not None:
            frame = self._conn.recv_nowait()
            if frame is None:
                return
            self._last_rx = time.monotonic()
            self._backoff = self._reconnect[0]
            try:
                message = self._codec.decode_map(frame)
            except TekError as exc:
                logger.warning("ignoring an undecodable frame from the gateway: {}", exc)
                continue
            if "event" in message:
                self._on_event(message)
            else:
                self._on_reply(message)

    def _on_reply(self, message: dict[str, Any]) -> None:
        call = self._in_flight.pop(message.get("re"), None)  # type: ignore[arg-type]
        if call is None:
            if message.get("ok") is False and message.get("re") is None:
                logger.warning("the gateway refused a frame: {}", message.get("error"))
            return
        if call.internal:
            self._on_internal_reply(call, message)
            return
        if message.get("ok"):
            result = message.get("result")
            if call.type in ("hello", "gateway.ping") and isinstance(result, dict):
                self._note_boot(str(result.get("boot_id")))
                if result.get("resync") == "snapshot":
                    self._last_seq = None  # the sync.snapshot events that follow set it
                elif call.type == "hello" and self._last_seq is None:
                    # Live only means "from now on": a reconnect resumes from here, so events
                    # journaled while the connection was down are replayed, not lost.
                    head = result.get("head_seq")
                    self._last_seq = head if isinstance(head, int) else None
            self._settle(call, result, None)
            return
        error = error_from_wire(message.get("error"))
        delay = (error.retry_after_ms or 200) / 1000
        # A retry that could not go out before the deadline would only hide this answer.
        in_time = call.deadline is None or time.monotonic() + delay < call.deadline
        final = (error.details or {}).get("retryable") is False  # another try cannot help
        if (
            error.code in RETRYABLE
            and call.retryable
            and not final
            and not self._closing.is_set()
            and in_time
        ):
            call.sent = False
            call.retry_at = time.monotonic() + delay
            self._waiting.append(call)
            return
        self._settle(call, None, error)

    def _on_internal_reply(self, call: Call, message: dict[str, Any]) -> None:
        result = message.get("result") if message.get("ok") else None
        if call.type == "gateway.ping":
            self._ping_out = False
            state = result.get("state") if isinstance(result, dict) else "unknown"
            self._serving = state in (None, "running", "degraded")  # None: a gateway without it
            self._gate_at = time.monotonic() + 0.1
        if isinstance(result, dict) and isinstance(result.get("boot_id"), str):
            self._note_boot(result["boot_id"])
        if call.type == "hello" and not message.get("ok"):
            logger.warning("hello was refused: {}", message.get("error"))
        if call.type == "hello" and isinstance(result, dict) and result.get("resync") == "snapshot":
            self._last_seq = None

    def _note_boot(self, boot: str) -> None:
        if self._boot is None:
            self._boot = boot
            return
        if boot == self._boot:
            return
        logger.info("the gateway came back as boot {}", boot)
        self._boot = boot
        self._held_boot = None
        self._resend_all()

    def _on_event(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        boot = event.get("boot")
        if isinstance(boot, str) and name != "sync.snapshot":
            self._note_boot(boot)
        if name == "gateway.heartbeat":
            return
        if name == "gateway.shutdown_imminent":
            self._held_boot = self._boot or ""
        if self._subscription is None:
            return  # only control events reach an unsubscribed client; they are handled above
        seq = event.get("seq")
        if isinstance(seq, int) and name != "sync.snapshot":
            if self._last_seq is not None and seq <= self._last_seq:
                return  # already delivered (a resend or an overlap after resync)
            if self._events.full():
                self._drop_connection(
                    "the caller is not reading events; resyncing from the "
                    "journal when there is room"
                )
                return
            self._last_seq = seq
        elif name == "sync.snapshot" and isinstance(seq, int):
            self._last_seq = seq if self._last_seq is None else min(self._last_seq, seq)
        elif self._events.full():
            return  # an ephemeral event; the durable one that follows carries its substance
        self._events.put(event)

    def _settle(self, call: Call, result: Any, error: TekError | None) -> None:
        if call.durable and call.idem is not None and self._outbox is not None:
            self._outbox.done(call.idem)
            with self._settled:
                self._settled.notify_all()
        if call.future.done():
            return
        if error is None:
            call.future.set_result(result)
        else:
            call.future.set_exception(error)

    def _fail(self, call: Call, error: TekError) -> None:
        if not call.internal and not call.future.done():
            call.future.set_exception(error)

    def _shutdown(self) -> None:
        if self._conn is not None:
            # Tell the gateway to forget this session now (best effort, no wait for the answer).
            try:
                self._conn.send(self._codec.encode({"v": 1, "id": next(self._ids), "type": "bye"}))
                linger = 100
            except ConnectionLost:
                linger = 0  # the gateway (or its context, when embedded) is gone already
            self._conn.close(linger_ms=linger)
            self._conn = None
        self._take_commands()
        lost = ConnectionLost("the client was closed before an answer came")
        for call in [*self._in_flight.values(), *self._waiting]:
            self._fail(call, lost)
        self._in_flight.clear()
        self._waiting.clear()
