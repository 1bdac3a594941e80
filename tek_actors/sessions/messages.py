"""What the SessionManager and its session actors tell each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CallDue", "Passivate", "Passivated", "SessionExited", "Unserved"]


@dataclass(frozen=True, slots=True)
class CallDue:
    """A session's own timer for its model call `call_id`: send it again (`resend`), or ask
    the provider actor whether it still has it. It names the call and holds nothing else: a
    timer outlives the actor that armed it (cancelled at its stop, it is dropped only when
    due), and one that held the actor would keep every passivated session's state alive."""

    call_id: str
    resend: bool


@dataclass(frozen=True, slots=True)
class Passivate:
    """Stop, with a snapshot if anything changed since the last (a session in a turn remembers
    it and goes once its turns are over)."""


@dataclass(frozen=True, slots=True)
class Passivated:
    session_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class SessionExited:
    """A session actor stopped: cleanly, or by a crash (`error`)."""

    session_id: str
    incarnation: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Unserved:
    """A request a session actor stopped before it took up (a crash stops it with its inbox
    unread): the manager sends it to the session's next incarnation. `ticket` is a runtime
    Ticket, never claimed, so it runs once."""

    session_id: str
    ticket: Any
