"""The persists of one actor that are in the journal's queue and not yet durable, in order.

`PersistentActor.persist_async` (runtime/actor.py) applies a command's events to the state at
once and queues their append; the command's answer waits here, behind every earlier one, until
the journal confirms the append. An entry with no append is an answer that depends on pending
state (a domain error, or a result that changed nothing): it waits its turn too, so an outside
reader never learns of a change before it is durable. Each append is chained `after` the one
before (Journal.append), so a refused append takes every later one with it: what reaches the
disk is always a prefix of what the actor did.

Only the actor's own thread touches a Pipeline.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Any

from tek_actors.errors import JournalError
from tek_actors.runtime.messages import Ticket
from tek_actors.store import EventRecord

__all__ = ["Pending", "Pipeline"]


@dataclass(slots=True)
class Pending:
    """One command waiting for durability: its answer and the state after its events."""

    ticket: Ticket | None
    future: Future[list[EventRecord]] | None  # None: only an answer waiting its turn
    state: Any  # the actor's state once this entry (and every one before it) is durable
    events: int
    ok: bool
    value: Any

    def failure(self) -> BaseException | None:
        """Why its append failed (the future must be done), else None."""
        return None if self.future is None else self.future.exception()


class Pipeline:
    """A FIFO of `Pending` entries, at most `limit` long (the actor waits before adding more)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._entries: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.limit

    def state_after(self, durable: Any) -> Any:
        """The state with every pending event applied (`durable` when nothing is pending)."""
        return self._entries[-1].state if self._entries else durable

    def tail(self) -> Future[list[EventRecord]] | None:
        """The newest pending append: the next one is chained after it."""
        for entry in reversed(self._entries):
            if entry.future is not None:
                return entry.future
        return None

    def push(self, entry: Pending) -> None:
        self._entries.append(entry)

    def pop_ready(self) -> Pending | None:
        """The oldest entry if its append has resolved (or it has none), else None."""
        if not self._entries:
            return None
        head = self._entries[0]
        if head.future is not None and not head.future.done():
            return None
        return self._entries.popleft()

    def drop_all(self) -> list[Pending]:
        """Every entry, oldest first; the pipeline is empty after."""
        entries = list(self._entries)
        self._entries.clear()
        return entries

    def wait(self, *, timeout: float) -> None:
        """Block until every pending append has resolved; JournalError after `timeout` s."""
        deadline = time.monotonic() + timeout
        for entry in list(self._entries):
            if entry.future is None:
                continue
            done, _ = wait_for([entry.future], timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise JournalError("journal did not confirm the write in time")
