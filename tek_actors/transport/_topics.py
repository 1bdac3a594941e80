"""What the frontend knows about each connected client: identity, topics, cursor, out-queue.

Touched only on the frontend thread.

Event delivery is cursor-based. `cursor` is the seq of the last durable event the client has been
given (queued or sent). A client is either `live` (new durable events are queued to it as they
are committed) or `catchup` (the frontend reads the journal from `cursor` in chunks while the
client has room, then turns it live). A live client whose out-queue passes its bound is not
skipped: it drops back to `catchup` from the last event actually sent, so memory stays bounded and
nothing is lost — the journal holds every durable event anyway.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["none", "resyncing", "catchup", "live"]

# Control events every client that said hello receives, whatever its topics.
CONTROL_EVENTS = frozenset({"gateway.shutdown_imminent", "gateway.heartbeat"})


def compile_topics(topics: list[str] | None) -> re.Pattern[str] | None:
    """One regex for a list of globs (`config.*`, `proc.output`); None matches everything."""
    if topics is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(t)})" for t in topics) or "(?!)")


def topic_prefixes(topics: list[str] | None) -> re.Pattern[str] | None:
    """Which domains (the part before the first dot) the topics reach, as one regex."""
    if topics is None:
        return None
    return re.compile(
        "|".join(f"(?:{fnmatch.translate(t.split('.', 1)[0])})" for t in topics) or "(?!)"
    )


@dataclass(slots=True)
class _OutFrame:
    frame: bytes
    seq: int | None  # the durable seq of an event frame; None for replies and ephemerals
    is_event: bool


@dataclass(slots=True)
class ClientSession:
    identity: bytes
    last_seen: float
    client_id: str | None = None
    authed: bool = False
    mode: Mode = "none"
    topics: re.Pattern[str] | None = None
    domains: re.Pattern[str] | None = None
    cursor: int = 0
    sent_cursor: int = 0
    floors: dict[str, int] = field(default_factory=dict)
    out: deque[_OutFrame] = field(default_factory=deque)
    queued_events: int = 0
    last_sent: float = 0.0
    lagged: int = 0
    closing: tuple[Any, ...] | None = None  # (bye's request id,): waiting for its replies

    def wants(self, name: str) -> bool:
        if name in CONTROL_EVENTS:
            return True
        return self.topics is None or self.topics.match(name) is not None

    def wants_domain(self, domain: str) -> bool:
        return self.domains is None or self.domains.match(domain) is not None

    def passes_floor(self, actor: str, seq: int) -> bool:
        """After a snapshot resync, events already inside an actor's snapshot are skipped."""
        floor = self.floors.get(actor)
        return floor is None or seq > floor

    def queue(self, frame: bytes, *, seq: int | None = None, is_event: bool = False) -> None:
        self.out.append(_OutFrame(frame, seq, is_event))
        if is_event:
            self.queued_events += 1

    def clear_events(self) -> int:
        """Drop queued durable events (replies and snapshots stay); how many were dropped."""
        kept = deque(f for f in self.out if not f.is_event)
        dropped = len(self.out) - len(kept)
        self.out = kept
        self.queued_events = 0
        return dropped

    def fall_back_to_catchup(self) -> int:
        """Drop queued events; resume from the last event really sent, via the journal."""
        dropped = self.clear_events()
        self.cursor = self.sent_cursor
        self.mode = "catchup"
        self.lagged += 1
        return dropped
