"""The client side of the wire: one DEALER socket, and a way to wake the thread that polls it.

A `Connection` belongs to one thread (ZeroMQ sockets are not thread-safe); only `wake()` may be
called from others. zmq errors never leave this module: they become `ConnectionLost` or
`Unavailable`.
"""

from __future__ import annotations

import socket
from typing import Any

import zmq

from tek_actors.errors import ConnectionLost
from tek_actors.transport._auth import ClientAuth

__all__ = ["Connection"]

_REFUSALS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class Connection:
    """A DEALER connected to `endpoint`. Pass the gateway's `context` for `inproc://`, and
    `auth` (CURVE keys or a token) for a `tcp://` gateway that asks for it."""

    def __init__(
        self,
        endpoint: str,
        *,
        identity: bytes,
        context: zmq.Context[Any] | None = None,
        heartbeat_s: float = 1.0,
        max_frame_bytes: int = 1 << 20,
        sndhwm: int = 10_000,
        auth: ClientAuth | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._own_context = context is None
        self._context = context if context is not None else zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.ROUTING_ID, identity)
            self._socket.setsockopt(zmq.SNDHWM, sndhwm)
            self._socket.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes * 64)
            ivl = int(heartbeat_s * 1000)
            self._socket.setsockopt(zmq.HEARTBEAT_IVL, ivl)
            self._socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * 3)
            self._socket.setsockopt(zmq.HEARTBEAT_TTL, ivl * 3)
            self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
            self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
            # With credentials, the socket's own events say when the gateway refuses them
            # (ZAP): `refused` then tells the client, which would otherwise hear only silence.
            self._monitor: zmq.Socket[Any] | None = None
            if auth is not None:
                auth.apply(self._socket)
            if endpoint.startswith("tcp://"):
                self._monitor = self._socket.get_monitor_socket(_REFUSALS)
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ConnectionLost(f"cannot connect to {endpoint}: {exc}") from exc
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._wake_r.fileno(), zmq.POLLIN)
        if self._monitor is not None:
            self._poller.register(self._monitor, zmq.POLLIN)
        self.refused: str | None = None  # why the gateway refused our credentials, if it did

    def send(self, frame: bytes) -> bool:
        """Queue one frame without blocking; False if the socket's queue is full."""
        try:
            self._socket.send(frame, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            raise ConnectionLost(f"send to {self.endpoint} failed: {exc}") from exc
        return True

    def recv_nowait(self) -> bytes | None:
        try:
            frame: bytes = self._socket.recv(zmq.NOBLOCK)
            return frame
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            raise ConnectionLost(f"receive from {self.endpoint} failed: {exc}") from exc

    def wait(self, timeout: float) -> None:
        """Block until a frame may be waiting, `wake()` was called, or `timeout` seconds pass."""
        try:
            ready = dict(self._poller.poll(max(0, int(timeout * 1000))))
        except zmq.ZMQError as exc:
            raise ConnectionLost(f"poll on {self.endpoint} failed: {exc}") from exc
        if self._wake_r.fileno() in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        if self._monitor is not None and self._monitor in ready:
            self._read_monitor()

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message  # it loads asyncio: only when needed

        assert self._monitor is not None
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.refused = None
            else:
                self.refused = (
                    f"the gateway at {self.endpoint} refused this client's credentials "
                    "(its CURVE key is not in the gateway's keys/authorized, or the token is wrong)"
                )

    def wake(self) -> None:
        """Thread-safe: make a pending `wait()` return."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def close(self, *, linger_ms: int = 0) -> None:
        """Close the socket; up to `linger_ms` is spent sending what is still queued."""
        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            self._socket.disable_monitor()
            monitor.close(0)
        self._socket.close(linger_ms)
        for sock in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if sock is not None:
                sock.close()
        if self._own_context:
            self._context.term()
