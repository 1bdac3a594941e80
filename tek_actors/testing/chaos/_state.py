"""What the threads of a run share (`_Run`): every state-changing request (`Op`) until its
final reply, the violations found so far, the ids handed out, and the events that pace the
run and end it (`_Abort` when it cannot go on)."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from tek_actors.testing.chaos._report import FINDINGS, ChaosSettings


@dataclass
class Op:
    """One state-changing request, with its idem key, until it gets a final reply."""

    kind: str  # the request type
    payload: dict[str, Any]
    idem: str
    meta: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    retried: Counter[str] = field(default_factory=Counter)  # why it was sent again
    result: Any = None
    error: dict[str, Any] | None = None
    done: bool = False
    abandoned: bool = False

    @property
    def acked(self) -> bool:
        return self.done and self.error is None


class _Abort(Exception):
    """The run cannot go on (the gateway does not come up, a client is stuck)."""


class _Run:
    """What the threads share. `generation` counts kills (bumped once the process is dead): an
    attempt sent under an older one may have been lost with the process that was to answer."""

    def __init__(self, settings: ChaosSettings, home: Path) -> None:
        self.settings = settings
        self.work = home / "work"
        self.tool_marker = self.work / "tool-marker.txt"
        self.proc_marker = self.work / "proc-marker.txt"
        self.context: zmq.Context[Any] = zmq.Context()
        self.endpoint = ""
        self.generation = 0
        self.stop_load = threading.Event()
        self.stop_decider = threading.Event()
        self.stop_follower = threading.Event()
        self.abort = threading.Event()
        self._lock = threading.Lock()
        self.ops: list[Op] = []
        self.violations: list[dict[str, Any]] = []
        self.tally: Counter[str] = Counter()
        self.harness_errors: list[str] = []
        self.plain_sessions: list[str] = []
        self.tool_sessions: list[str] = []
        self.decisions: dict[str, str] = {}  # approval id -> approve | deny (acknowledged)
        self._tokens = itertools.count(1)
        self._procs = itertools.count(1)

    def add_op(self, op: Op) -> Op:
        with self._lock:
            self.ops.append(op)
        return op

    def next_token(self) -> str:
        with self._lock:
            return f"TOK{next(self._tokens):05d}"

    def next_proc(self) -> str:
        with self._lock:
            return f"chaos-proc-{next(self._procs):05d}"

    def found(self, kind: str, tally: int = 1, /, **detail: Any) -> None:
        """Report a violation of FINDINGS[kind]; it adds `tally` to its count."""
        check, what, counter = FINDINGS[kind]
        with self._lock:
            self.violations.append({"check": check, "kind": kind, "what": what, **detail})
            if counter:
                self.tally[counter] += tally

    def harness_error(self, what: str) -> None:
        with self._lock:
            self.harness_errors.append(what)

    def pause(self, seconds: float) -> None:
        """Pacing: of the load, of a retry after its retry_after_ms, and between the polls
        of a bounded wait. Ends at once when the run aborts."""
        self.abort.wait(seconds)
