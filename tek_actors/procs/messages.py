"""How another actor learns how a process ended (the approval actor, after a restart)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pykka

__all__ = ["ProcEnded", "WatchProcess"]


@dataclass(frozen=True, slots=True)
class WatchProcess:
    """Tell `reply_to` a ProcEnded for `proc_id` once it has ended (at once if it has)."""

    proc_id: str
    reply_to: pykka.ActorRef[Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ProcEnded:
    proc_id: str
    state: str  # exited | lost | unknown (no such process)
    exit_code: int | None = None
    signal: int | None = None
