"""The request lifecycle: a routed request (`domain.verb`) from its frame to its one reply.

Routing (the Directory names the actor), the `Ticket` that carries the request to the actor and
its answer back, the deadline of every request (on the injected Clock, so a test moves time with
a FakeClock), the pending requests, and the idempotency gate. Everything here runs on the
socket thread; the journal is read only through the JournalReader, off that thread.

**The idempotency gate** is the one place that decides what a request carrying `idem` gets:
- the same key and request as a *running* first copy: that copy's answer (it waits for it);
- a key the journal has a record for: the recorded first reply, without any actor (so it is
  answered during a restart too); a different request under a used key: `invalid_request`;
- otherwise it runs, and the ticket carries the key and the request's digest to the actor,
  which writes the record in the same transaction as the request's events: the record is
  durable exactly when the change it answers is.
The look-up is a read on the reader thread. While it runs, the frontend holds the same peer's
later frames, so one peer's requests are taken in the order it sent them.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pykka

from tek_actors.errors import (
    InvalidRequest,
    Overloaded,
    RequestTimeout,
    TekError,
    Unavailable,
    UnknownType,
)
from tek_actors.runtime import Clock, Directory, Ticket
from tek_actors.store import IdemRecord, Journal
from tek_actors.transport._reader import JournalReader
from tek_actors.wire import Request, error_reply, ok_reply

__all__ = ["Requests"]

Answer = Callable[[bytes, dict[str, Any]], None]  # (peer identity, reply envelope)


@dataclass(slots=True)
class _Pending:
    ticket: Ticket
    identity: bytes
    request_id: Any
    actor: str
    deadline: float
    size: int
    waiters: list[tuple[bytes, Any]] = field(default_factory=list)
    expired: bool = False  # its requester was told `timeout`; the actor is still on it


@dataclass(slots=True)
class _Routed:
    identity: bytes
    client_id: str | None
    request: Request
    size: int
    digest: bytes | None = None
    actor: str | None = None  # the actor that serves its domain


class Requests:
    def __init__(
        self,
        *,
        directory: Directory,
        journal: Journal,
        reader: JournalReader,
        clock: Clock,
        answer: Answer,
        respond: Callable[[Ticket, bool, Any], None],
        wake: Callable[[], None],
        released: Callable[[bytes], None],
        max_pending: int,
        max_pending_bytes: int,
    ) -> None:
        self._directory = directory
        self._journal = journal
        self._reader = reader
        self._clock = clock
        self._answer_to = answer
        self._respond = respond
        self._wake = wake  # posts ("expire",) to the socket thread
        self._released = released  # a peer's look-up is done: its held frames may go on
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self.default_timeout_ms = 60_000
        self.accepting = True
        self.refuse_retry_ms = 1_000
        self.refuse_state = "restarting"  # what a refusal says the gateway is doing
        self.pending: dict[Ticket, _Pending] = {}
        self.pending_bytes = 0
        self._running: dict[str, _Pending] = {}  # idem key -> the first copy, running
        self._looking: dict[bytes, _Routed] = {}  # peer -> its request whose idem is read
        self._deadlines: list[tuple[float, int, Ticket]] = []
        self._tiebreak = itertools.count()
        self._timer: Any = None
        self._timer_due: float | None = None

    # -- in ------------------------------------------------------------------------------------

    def route(self, identity: bytes, client_id: str | None, request: Request, size: int) -> None:
        """Take a routed request (its frame was `size` bytes); a refusal is answered here. If
        its idem key needs a look-up, `looking_up(identity)` is true until `released` is
        called with it (the frontend holds the peer's later frames meanwhile)."""
        self._admit(_Routed(identity, client_id, request, size))

    def looking_up(self, identity: bytes) -> bool:
        return identity in self._looking

    def _admit(self, routed: _Routed) -> None:
        """Route `routed` now, unless its idem key needs a look-up (then its peer waits)."""
        try:
            request = routed.request
            if "." in request.type:
                routed.actor = self._directory.route(request.type.split(".")[0])
            if routed.actor is None:
                raise UnknownType(
                    f"unknown message type {request.type!r}", details={"type": request.type}
                )
            if request.idem is None:
                self._start(routed)
                return
            routed.digest = hashlib.sha256(
                request.type.encode() + b"\0" + msgpack.packb(request.payload, use_bin_type=True)
            ).digest()
            first = self._running.get(request.idem)
            if first is not None:  # the first copy is still running: this one gets its answer
                self._join(first, routed)
                return
        except TekError as err:
            self._error(routed.identity, routed.request.id, err)
            return
        key = request.idem
        self._looking[routed.identity] = routed
        self._reader.read(
            lambda: self._journal.idem_lookup(key), lambda record: self._looked_up(routed, record)
        )

    def _looked_up(self, routed: _Routed, record: IdemRecord | Exception | None) -> None:
        try:
            if isinstance(record, Exception):
                raise Unavailable(
                    f"cannot read the journal: {record}; retry shortly", retry_after_ms=1_000
                )
            request = routed.request
            if record is not None:
                if record.type != request.type or record.digest != routed.digest:
                    raise InvalidRequest(
                        "this idem key was already used for a different request",
                        details={"field": "idem", "first_type": record.type},
                    )
                result = msgpack.unpackb(record.reply, raw=False)
                self._answer_to(routed.identity, ok_reply(request.id, result))
            else:
                assert request.idem is not None
                first = self._running.get(request.idem)
                if first is not None:  # a copy from another peer started meanwhile
                    self._join(first, routed)
                else:
                    self._start(routed)
        except TekError as err:
            self._error(routed.identity, routed.request.id, err)
        del self._looking[routed.identity]
        self._released(routed.identity)

    def _join(self, first: _Pending, routed: _Routed) -> None:
        if first.ticket.idem_digest != routed.digest:
            raise InvalidRequest(
                "this idem key is in use by a different request that is still running",
                details={"field": "idem", "first_type": first.ticket.type},
            )
        first.waiters.append((routed.identity, routed.request.id))

    def _start(self, routed: _Routed) -> None:
        request = routed.request
        if not self.accepting:
            raise Unavailable(
                f"the gateway is {self.refuse_state}; retry shortly",
                retry_after_ms=self.refuse_retry_ms,
                details={"state": self.refuse_state},
            )
        name = routed.actor
        assert name is not None  # _admit refused a type no actor serves
        ref = self._directory.lookup(name)
        if ref is None:
            raise self._down_error(name)
        if len(self.pending) >= self._max_pending:
            raise Overloaded("too many requests in flight", retry_after_ms=500)
        if self.pending_bytes + routed.size > self._max_pending_bytes:
            raise Overloaded(
                f"{self.pending_bytes >> 20} MiB of requests are in flight; retry shortly",
                retry_after_ms=500,
            )
        ticket = Ticket(
            request.type,
            request.payload,
            self._respond,
            client_id=routed.client_id,
            idem=request.idem,
            idem_digest=routed.digest,
        )
        timeout_ms = request.timeout_ms or self.default_timeout_ms
        deadline = self._clock.monotonic() + timeout_ms / 1000
        pending = _Pending(ticket, routed.identity, request.id, name, deadline, routed.size)
        self.pending[ticket] = pending
        self.pending_bytes += routed.size
        if request.idem is not None:
            self._running[request.idem] = pending
        self._arm(deadline, ticket)
        try:
            ref.tell(ticket)
        except pykka.ActorDeadError:
            self.actor_down(name)

    def _down_error(self, name: str) -> Unavailable:
        due = self._directory.retry_at(name)
        now = self._clock.monotonic()
        retry_ms = 500 if due is None else max(50, int((due - now) * 1000) + 50)
        state = self._directory.state_of(name) or "restarting"
        if state == "running":  # it came back between our lookup and now
            state = "restarting"
        return Unavailable(
            f"{name} is {state}; retry shortly",
            retry_after_ms=retry_ms,
            details={"actor": name, "state": state},
        )

    # -- out -----------------------------------------------------------------------------------

    def on_reply(self, ticket: Ticket, ok: bool, value: Any) -> None:
        pending = self._forget(ticket)
        if pending is None:
            return
        if ok:
            self._answer(pending, ok_reply(pending.request_id, value))
        else:
            error = value if isinstance(value, TekError) else Unavailable(str(value))
            self._answer(pending, error_reply(pending.request_id, error.to_wire()))

    def _forget(self, ticket: Ticket) -> _Pending | None:
        pending = self.pending.pop(ticket, None)
        if pending is not None:
            # Answered or cancelled: no actor reads it again. Its deadline's heap entry keeps
            # the ticket until then, and must not keep the payload with it.
            ticket.payload = {}
            self.pending_bytes -= pending.size
            if ticket.idem is not None:
                self._running.pop(ticket.idem, None)
        return pending

    def _answer(self, pending: _Pending, reply: dict[str, Any], *, waiters: bool = True) -> None:
        """The reply to the requester (unless it was already told `timeout`) and its copies."""
        if not pending.expired:
            self._answer_to(pending.identity, reply)
        if waiters:
            for identity, request_id in pending.waiters:
                self._answer_to(identity, {**reply, "re": request_id})

    def _error(self, identity: bytes, request_id: Any, error: TekError) -> None:
        self._answer_to(identity, error_reply(request_id, error.to_wire()))

    def unanswered(self, identity: bytes) -> bool:
        """Whether a routed request `identity` sent still awaits its reply."""
        return identity in self._looking or any(
            p.identity == identity and not p.expired for p in self.pending.values()
        )

    # -- deadlines -----------------------------------------------------------------------------

    def _arm(self, deadline: float, ticket: Ticket) -> None:
        heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), ticket))
        if self._timer_due is None or deadline < self._timer_due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_due = deadline
            self._timer = self._clock.call_at(deadline, self._wake)

    def expire(self) -> None:
        """Answer every request whose deadline passed (called on the socket thread when the
        clock's timer fires), then arm the timer for the next deadline."""
        now = self._clock.monotonic()
        self._timer = self._timer_due = None
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, ticket = heapq.heappop(self._deadlines)
            pending = self.pending.get(ticket)
            if pending is None or pending.expired:
                continue
            if ticket.cancel():
                self._forget(ticket)
                error = RequestTimeout(
                    "the deadline passed before the request started; it will not run",
                    details={"started": False},
                )
                self._answer(pending, error_reply(pending.request_id, error.to_wire()))
            else:
                # Still running: its requester hears `timeout` now; copies sent with the same
                # idem key keep waiting for the real answer.
                error = RequestTimeout(
                    "the deadline passed while the request was running; it may still complete "
                    "(resend it with the same idem key to learn how it ended)",
                    details={"started": True},
                )
                self._answer(
                    pending, error_reply(pending.request_id, error.to_wire()), waiters=False
                )
                pending.expired = True
        # Entries of answered requests leave the heap at their deadline; rebuilt when they
        # outnumber the live ones, so a burst of short requests does not pin memory.
        if len(self._deadlines) > 2 * len(self.pending) + 1024:
            live = [(p.deadline, next(self._tiebreak), t) for t, p in self.pending.items()]
            heapq.heapify(live)
            self._deadlines = live
        if self._deadlines:
            deadline, _, ticket = heapq.heappop(self._deadlines)
            self._arm(deadline, ticket)

    # -- refusing and cancelling ---------------------------------------------------------------

    def cancel_where(
        self, predicate: Callable[[_Pending], bool], why: str, details: dict[str, Any]
    ) -> None:
        for ticket, pending in list(self.pending.items()):
            if predicate(pending) and ticket.cancel():
                self._forget(ticket)
                error = Unavailable(
                    f"{why}; the request did not run",
                    retry_after_ms=self.refuse_retry_ms,
                    details={**details, "started": False},
                )
                self._answer(pending, error_reply(pending.request_id, error.to_wire()))

    def actor_down(self, name: str) -> None:
        self.cancel_where(
            lambda p: p.actor == name,
            f"{name} is restarting",
            {"actor": name, "state": "restarting"},
        )

    def stopping(self) -> None:
        """The socket closes: every pending request hears `unavailable` (started or not)."""
        for ticket, pending in list(self.pending.items()):
            started = not ticket.cancel()
            error = Unavailable(
                "the gateway is stopping",
                retry_after_ms=1000,
                details={"state": "stopping", "started": started},
            )
            self._answer(pending, error_reply(pending.request_id, error.to_wire()))
        for routed in self._looking.values():
            error = Unavailable(
                "the gateway is stopping", retry_after_ms=1000, details={"state": "stopping"}
            )
            self._error(routed.identity, routed.request.id, error)
        self._looking.clear()
        self.pending.clear()
        self.pending_bytes = 0
        self._running.clear()
        if self._timer is not None:
            self._timer.cancel()
