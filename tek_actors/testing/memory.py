"""Hostile load for memory: requests with ~1 MiB fields of every type, and random frames, sent
by a raw pyzmq client to a real gateway process, with the process's RSS read as it goes.

Used by tests/integration/test_memory.py (bounded growth, every request answered) and
tools/bench/bench_memory.py (the figures in docs/performance.md).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import psutil
import zmq

__all__ = ["HostileClient", "MemoryRun", "big_requests", "fuzz_frames"]

MIB = 1 << 20
# A field of the given type that is (nearly) a whole frame: the types that carry content take
# it in full (and refuse it as a value), the others refuse it at their small bound.
_BIG_FIELDS: dict[str, Any] = {
    "config.set": lambda big: {"path": "limits.x", "value": big},
    "config.validate": lambda big: {"document": {"x": big}},
    "config.replace": lambda big: {"document": {"x": big}},
    "config.get": lambda big: {"path": big},
    "procs.get": lambda big: {"id": big},
    "procs.logs": lambda big: {"id": big},
    "sessions.get": lambda big: {"id": big},
    "sessions.send": lambda big: {"id": "no-such-session", "content": big},
    "approvals.get": lambda big: {"id": big},
    "approvals.request": lambda big: {"session": "s", "tool_call": big, "tool": "x"},
    "hello": lambda big: {"client_id": big},
    "nosuch.verb": lambda big: {"x": big},
}


def big_requests(
    n: int, *, size: int = MIB - 4096, seed: int = 7
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`n` (type, payload) pairs, each with one field of about `size` bytes."""
    rng = random.Random(seed)
    types = sorted(_BIG_FIELDS)
    for i in range(n):
        big = chr(ord("a") + i % 26) * size  # a new string each time: nothing is shared
        kind = types[rng.randrange(len(types))]
        yield kind, _BIG_FIELDS[kind](big)


def fuzz_frames(n: int, *, seed: int = 11) -> Iterator[tuple[bytes, bool]]:
    """`n` random frames, and whether each is a well-formed request (which must be answered;
    malformed ones are answered too when they decode to a map)."""
    rng = random.Random(seed)
    types = [*sorted(_BIG_FIELDS), "gateway.ping", "gateway.status", "probe.get", "bye"]
    for i in range(n):
        roll = rng.random()
        if roll < 0.4:
            env = {"v": 1, "id": i, "type": rng.choice(types), "payload": _junk(rng, 3)}
            yield msgpack.packb(env), True
        elif roll < 0.7:
            yield msgpack.packb(_junk(rng, 4)), False
        else:
            yield rng.randbytes(rng.randrange(1, 4096)), False


def _junk(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return rng.choice([None, True, 1.5, -(2**63), 2**64 - 1, "x" * rng.randrange(200), b"\0"])
    if roll < 0.65:
        return [_junk(rng, depth - 1) for _ in range(rng.randrange(6))]
    return {f"k{rng.randrange(50)}": _junk(rng, depth - 1) for _ in range(rng.randrange(6))}


@dataclass
class MemoryRun:
    """RSS samples (MiB) of one process, and the requests left unanswered."""

    pid: int
    samples: list[float] = field(default_factory=list)
    unanswered: int = 0

    def sample(self) -> float:
        rss = psutil.Process(self.pid).memory_info().rss / MIB
        self.samples.append(rss)
        return rss

    @property
    def growth(self) -> float:
        return max(self.samples) - self.samples[0]


class HostileClient:
    """One DEALER that sends frames with a bounded window of unanswered ones."""

    def __init__(self, endpoint: str, *, window: int = 64) -> None:
        self.context: zmq.Context[Any] = zmq.Context()
        self.socket: zmq.Socket[Any] = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, 30_000)
        self.socket.connect(endpoint)
        self.window = window
        self.outstanding: set[Any] = set()
        self.anonymous = 0  # error replies with re nil (frames that had no usable id)

    def send(self, frame: bytes, *, request_id: Any = None) -> None:
        if request_id is not None:
            self.outstanding.add(request_id)
        self.socket.send(frame)
        while len(self.outstanding) >= self.window:
            self._receive()

    def request(self, type_name: str, payload: dict[str, Any], request_id: Any) -> None:
        frame = msgpack.packb({"v": 1, "id": request_id, "type": type_name, "payload": payload})
        self.send(frame, request_id=request_id)

    def drain(self) -> int:
        """Wait for every outstanding reply; how many never came (in 30 s each)."""
        while self.outstanding:
            try:
                self._receive()
            except zmq.Again:
                break
        return len(self.outstanding)

    def _receive(self) -> None:
        message = msgpack.unpackb(self.socket.recv(), raw=False, strict_map_key=False)
        if isinstance(message, dict) and "re" in message:
            if message["re"] is None:
                self.anonymous += 1
            self.outstanding.discard(message["re"])

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()
