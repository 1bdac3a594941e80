"""The raw DEALER link to the gateway: MessagePack envelopes, and `_Link`, one thread's socket
with one attempt in flight, that resends a request under its idem key until it has a final
reply. Only pyzmq and msgpack: nothing of tek_actors speaks for the chaos clients."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgpack
import zmq

from tek_actors.testing.chaos._state import Op, _Abort, _Run

# The error codes after which a request is sent again (under its idem key, if it has one).
RETRIED = frozenset({"unavailable", "overloaded", "timeout", "internal", "rate_limited"})


class _ReadError(Exception):
    """A read was refused (not with a RETRIED code): the gateway's answer is in `error`."""

    def __init__(self, type_: str, payload: Any, error: dict[str, Any]) -> None:
        super().__init__(f"{type_} {payload!r}: {error.get('code')}: {error.get('message')}")
        self.error = error


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False)


def _envelope(rid: str, type_: str, payload: dict[str, Any], idem: str | None) -> bytes:
    env: dict[str, Any] = {"v": 1, "id": rid, "type": type_, "payload": payload}
    if idem is not None:
        env["idem"] = idem
    return _pack(env)


def _dealer(run: _Run, *, reconnect_ms: int) -> zmq.Socket[Any]:
    """A DEALER socket connected to the run's endpoint that drops what it holds when closed
    (linger 0). Whoever asked for it closes it."""
    sock: zmq.Socket[Any] = run.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, reconnect_ms)
    sock.connect(run.endpoint)
    return sock


class _Link:
    """One thread's DEALER socket: one attempt in flight at a time, resends under one idem key.
    Owned by one thread (ZeroMQ sockets are not thread-safe), which must `close()` it."""

    def __init__(self, run: _Run, name: str, *, keep_events: bool = False) -> None:
        self.run = run
        self.name = name
        self.keep_events = keep_events
        self.events: list[dict[str, Any]] = []  # met while awaiting a reply (keep_events)
        self._ids = itertools.count(1)
        self.socket: zmq.Socket[Any] | None = None
        self.generation = -1

    def fresh(self) -> zmq.Socket[Any]:
        self.close()
        sock = _dealer(self.run, reconnect_ms=20)  # a restarted gateway is found at once
        self.socket, self.generation, self.events = sock, self.run.generation, []
        return sock

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    @property
    def stale(self) -> bool:
        """The gateway this socket talked to was killed since it was made."""
        return self.generation != self.run.generation

    def attempt(
        self, type_: str, payload: dict[str, Any], idem: str | None = None, *, timeout: float = 0
    ) -> dict[str, Any] | None:
        """Send once and return the reply; None (and the socket closed, so a late reply is
        never read) if the gateway was killed meanwhile or no reply came in time."""
        sock = self.socket if self.socket is not None and not self.stale else self.fresh()
        rid = f"{self.name}-{next(self._ids)}"
        sock.send(_envelope(rid, type_, payload, idem))
        deadline = time.monotonic() + (timeout or self.run.settings.attempt_timeout_s)
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if sock.poll(max(0, min(50, left_ms)), zmq.POLLIN):
                msg = _unpack(sock.recv())
                if isinstance(msg, dict) and "event" in msg:
                    if self.keep_events:
                        self.events.append(msg)
                elif isinstance(msg, dict) and msg.get("re") == rid:
                    return msg
                else:  # one attempt in flight per socket: only a second reply can be this
                    self.run.found("second_reply", re=msg, awaiting=rid, link=self.name)
                continue
            if left_ms <= 0 or self.stale or self.run.abort.is_set():
                self.close()
                return None

    def perform(self, op: Op) -> Op:
        """Until `op` has a final reply: resend under its idem key after no reply, or after a
        retryable error and its retry_after_ms (at most 1 s)."""
        while not op.done:
            if self.run.abort.is_set():
                op.abandoned = True
                return op
            op.attempts += 1
            reply = self.attempt(op.kind, op.payload, op.idem)
            if reply is None:
                op.retried["no_reply"] += 1
            elif reply.get("ok") is True:
                op.result, op.done = reply.get("result"), True
            elif (reply.get("error") or {}).get("code") in RETRIED:
                op.retried[reply["error"]["code"]] += 1
                self._pause_after(reply["error"])
            else:
                op.error, op.done = dict(reply.get("error") or {}), True
        return op

    def read(self, type_: str, payload: dict[str, Any] | None = None) -> Any:
        """A request that changes nothing, until it is answered; _ReadError if refused."""
        while not self.run.abort.is_set():
            reply = self.attempt(type_, payload or {})
            if reply is None:
                continue
            if reply.get("ok") is True:
                return reply.get("result")
            error = reply.get("error") or {}
            if error.get("code") not in RETRIED:
                raise _ReadError(type_, payload, error)
            self._pause_after(error)
        raise _Abort(f"aborted during {type_}")

    def hello(self, client_id: str, since_seq: int, *, timeout: float = 0) -> dict[str, Any] | None:
        """`hello` on a fresh socket, as `attempt`: the events that come before the reply are
        in `events` (with `keep_events`), the ones after it wait in `socket`."""
        payload = {"client_id": client_id, "since_seq": since_seq, "topics": None}
        self.fresh()
        return self.attempt("hello", payload, timeout=timeout)

    def _pause_after(self, error: dict[str, Any]) -> None:
        """Wait out a retryable error: its retry_after_ms (200 ms if none), at most 1 s."""
        self.run.pause(min(int(error.get("retry_after_ms") or 200), 1000) / 1000)
