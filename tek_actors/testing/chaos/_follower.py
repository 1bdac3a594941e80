"""The follower: one client that keeps every durable event the gateway journals, saying
`hello {since_seq: the last seq it got}` after every reconnect. The schedule waits on it (a
new process's `gateway.started`), and the checks read what it got: repeats, gaps, snapshots."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from tek_actors.testing.chaos._link import _envelope, _unpack
from tek_actors.testing.chaos._state import _Run
from tek_actors.testing.chaos._workload import _Worker


class _Follower(_Worker):
    """Every durable event: `hello` with the last seq it got after every reconnect (a kill of
    the gateway, or silence and then a ping answered by another boot)."""

    def __init__(self, run: _Run, stop: threading.Event) -> None:
        super().__init__(run, "follower", stop)
        self.link.keep_events = True
        self.events: dict[int, dict[str, Any]] = {}
        self.repeats: list[int] = []
        self.stream_gaps: list[tuple[int, int]] = []  # (expected, got) right after a hello
        self.snapshots: list[dict[str, Any]] = []
        self.hellos: list[dict[str, Any]] = []
        self.last_seq = 0
        self.snapshot_mode = False
        self._lock = threading.Condition()  # guards events, last_seq and started_pids
        self._started_pids: set[int] = set()
        self._pings = itertools.count(1)

    def snapshot(self) -> dict[int, dict[str, Any]]:
        """The durable events so far, by seq (a copy: the follower goes on meanwhile)."""
        with self._lock:
            return dict(self.events)

    def wait_started(self, pid: int, timeout: float) -> bool:
        """True once process `pid`'s `gateway.started` has arrived."""
        return self._wait_until(lambda: pid in self._started_pids, timeout)

    def wait_seq(self, seq: int, timeout: float) -> bool:
        """True once every event up to `seq` has arrived."""
        return self._wait_until(lambda: self.last_seq >= seq, timeout)

    def _wait_until(self, arrived: Callable[[], bool], timeout: float) -> bool:
        """Block the calling thread until `arrived()` (read under the lock) is true: False if
        it is not within `timeout` seconds, or the run aborts first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not arrived():
                left = deadline - time.monotonic()
                if left <= 0 or self.chaos.abort.is_set():
                    return False
                self._lock.wait(min(left, 0.2))
            return True

    def has_started(self, pid: int) -> bool:
        with self._lock:
            return pid in self._started_pids

    def work(self) -> None:
        while not self.stop.is_set():
            reply = self.link.hello("chaos-follower", self.last_seq, timeout=3.0)
            if reply is None or not reply.get("ok"):
                continue
            result = reply["result"]
            self.hellos.append({"since": self.last_seq, **result})
            if result.get("resync") == "snapshot":
                self.snapshot_mode = True
                if result["head_seq"] < self.last_seq:
                    self.chaos.found("head_went_back", since_seq=self.last_seq, hello=result)
            for event in self.link.events:
                self._on_event(event)
            self._follow(result["boot_id"])

    def _follow(self, boot: str) -> None:
        sock = self.link.socket
        assert sock is not None
        last_rx = time.monotonic()
        ping: tuple[str, float] | None = None
        while not self.stop.is_set() and not self.link.stale:
            if sock.poll(100, zmq.POLLIN):
                msg = _unpack(sock.recv())
                last_rx = time.monotonic()
                if isinstance(msg, dict) and "event" in msg:
                    self._on_event(msg)
                elif isinstance(msg, dict) and ping is not None and msg.get("re") == ping[0]:
                    ping = None
                    if (msg.get("result") or {}).get("boot_id") != boot:
                        return  # another gateway answers on this socket: say hello to it
                continue
            now = time.monotonic()
            if ping is None and now - last_rx > 2.0:  # heartbeats come every second
                rid = f"follower-ping-{next(self._pings)}"
                sock.send(_envelope(rid, "gateway.ping", {}, None))
                ping = (rid, now)
            elif ping is not None and now - ping[1] > 3.0:
                return

    def _on_event(self, event: dict[str, Any]) -> None:
        seq = event.get("seq")
        if seq is None:
            return  # ephemeral
        if event.get("event") == "sync.snapshot":
            self.snapshots.append({"seq": seq, "domain": event["data"].get("domain")})
            return
        with self._lock:
            if seq in self.events:
                self.repeats.append(seq)
            elif seq != self.last_seq + 1 and not self.snapshot_mode:
                self.stream_gaps.append((self.last_seq + 1, seq))
            self.events.setdefault(seq, event)
            self.last_seq = max(self.last_seq, seq)
            if event.get("event") == "gateway.started":
                self._started_pids.add(int(event["data"].get("pid", -1)))
            self._lock.notify_all()
