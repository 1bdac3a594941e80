"""What the SessionManager and its session actors tell each other."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Passivate", "Passivated", "SessionExited"]


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
