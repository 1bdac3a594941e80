"""How another actor learns how a process ended (a session running a tool, the approval actor
after a restart), and with it the output of a short process."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pykka

__all__ = ["ProcEnded", "WatchProcess"]


@dataclass(frozen=True, slots=True)
class WatchProcess:
    """Tell `reply_to` a ProcEnded for `proc_id` once it has ended (at once if it has). With
    `tool_call` instead of `proc_id`: the process started for that tool call (sent right behind
    its `procs.start`, so a quick process's end is told without waiting for the start's
    answer); a start that did not start a process is not watched (its answer says why).
    Watching twice tells once."""

    proc_id: str | None
    reply_to: pykka.ActorRef[Any] = field(repr=False)
    tool_call: str | None = None


@dataclass(frozen=True, slots=True)
class ProcEnded:
    """How `proc_id` ended, told as soon as its end is queued for the journal: `durable` is
    that append's future (None: durable already). Whatever the receiver journals because of
    this end comes `after=durable` (PersistentActor.persist): the journal then writes it only
    if the end is written, in the same transaction or after it. `lines`: its output from the first
    line, as `procs.logs` gives it, at most limits.tool_output_bytes of text; `next` is the
    last n among them and `last` the last n there is: when `next < last`, read the rest with
    `procs.logs` from `since: next`. None when the monitor holds no whole output to send (lines
    dropped from memory, or a process it no longer keeps): read it all with `procs.logs`."""

    proc_id: str
    state: str  # exited | lost | unknown (no such process)
    exit_code: int | None = None
    signal: int | None = None
    lines: tuple[dict[str, Any], ...] | None = field(default=None, repr=False)
    next: int = 0
    last: int = 0
    durable: Future[Any] | None = field(default=None, repr=False, compare=False)
    tool_call: str | None = None  # the tool call it ran for
