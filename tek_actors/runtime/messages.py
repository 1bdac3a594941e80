"""What travels between the frontend, the supervisor and the actors inside one process.

Plain slotted classes, not pydantic: they are built from values that were validated at the
edge and cost nothing to pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChildExited",
    "Fault",
    "RestartDue",
    "SnapshotNow",
    "StatusQuery",
    "SyncStateQuery",
    "Ticket",
]

_NEW, _CLAIMED, _CANCELLED = 0, 1, 2


class Ticket:
    """One client request on its way to an actor, and the way back.

    Exactly one of `claim()` (the actor starts the work) and `cancel()` (the frontend gave up:
    deadline, shutdown, the actor died) succeeds, so a request the client was told did not run
    never runs. `respond(ok, value)` is called once by the actor, from its thread; `value` is
    the result, or the TekError to answer.
    """

    __slots__ = (
        "_lock",
        "_state",
        "client_id",
        "idem",
        "idem_digest",
        "payload",
        "respond",
        "type",
    )

    def __init__(
        self,
        type: str,
        payload: dict[str, Any],
        respond: Callable[[Ticket, bool, Any], None],
        *,
        client_id: str | None = None,
        idem: str | None = None,
        idem_digest: bytes | None = None,
    ) -> None:
        self.type = type
        self.payload = payload
        self.respond = respond
        self.client_id = client_id
        self.idem = idem
        self.idem_digest = idem_digest
        self._lock = threading.Lock()
        self._state = _NEW

    def claim(self) -> bool:
        with self._lock:
            if self._state != _NEW:
                return False
            self._state = _CLAIMED
            return True

    def cancel(self) -> bool:
        """True if the work will never start; False if an actor already started it."""
        with self._lock:
            if self._state == _CLAIMED:
                return False
            self._state = _CANCELLED
            return True

    @property
    def started(self) -> bool:
        return self._state == _CLAIMED


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A child stopped: `error` is None for a normal stop, else what killed it."""

    name: str
    incarnation: int
    error: BaseException | None
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class RestartDue:
    """The backoff of a restart ran out (sent by a clock timer to the supervisor)."""

    names: tuple[str, ...]
    generation: int
    crashed: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotNow:
    """Ask an actor to write a snapshot now (before a planned restart)."""


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """Ask an actor for a small dict about itself (for `gateway.status`)."""


@dataclass(frozen=True, slots=True)
class SyncStateQuery:
    """Ask an actor for (seq, public state) of its domain, for `sync.snapshot`."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Test-only fault hook: the actor raises while handling this message."""

    reason: str = "injected fault"
    extra: dict[str, Any] = field(default_factory=dict)
