"""What the process monitor keeps (its journaled state) and the payloads it is asked with."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictStr

from tek_actors.runtime.effects import IntentLog
from tek_actors.wire import WireModel

__all__ = [
    "IdPayload",
    "KillPayload",
    "Line",
    "ListPayload",
    "LogsPayload",
    "ProcRecord",
    "ProcsState",
    "RemovedProc",
    "StartPayload",
]

Stream = Literal["stdout", "stderr"]
EnvName = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^=\x00]+$")]


class Line(BaseModel):
    n: int
    stream: str  # stdout | stderr | dropped (a marker)
    text: str


class ProcRecord(BaseModel):
    id: str
    argv: list[str]
    cwd: str | None = None
    session: str | None = None
    tool_call: str | None = None
    dir: str
    pid: int
    pgid: int
    create_time: float | None = None
    runner_pid: int | None = None
    started_at: float
    state: Literal["running", "exited", "lost"] = "running"
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    offsets: dict[str, int] = {"stdout": 0, "stderr": 0}
    next_n: int = 1
    lines: list[Line] = []
    dropped: int = 0

    def public(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"lines", "offsets", "dir", "next_n"})
        out["lines"] = self.next_n - 1
        if self.ended_at is not None:
            out["duration_s"] = round(self.ended_at - self.started_at, 3)
        return out


class RemovedProc(BaseModel):
    """What is kept of a process `procs.remove` forgot: how it ended (for a WatchProcess that
    comes after, e.g. the approval actor's recovery), and its folder (deleted again at the
    next start of the monitor, should a crash have come between the journal and the delete)."""

    id: str
    dir: str
    state: str
    exit_code: int | None = None
    signal: int | None = None


class ProcsState(BaseModel):
    procs: dict[str, ProcRecord] = {}
    intents: IntentLog = IntentLog()  # every start, journaled before the runner is launched
    removed: list[RemovedProc] = []  # the newest KEEP_REMOVED removals, oldest first


class StartPayload(WireModel):
    argv: Annotated[
        list[Annotated[StrictStr, Field(max_length=65_536)]], Field(min_length=1, max_length=4096)
    ]
    cwd: Annotated[StrictStr, Field(min_length=1, max_length=4096)] | None = None
    env: dict[EnvName, Annotated[StrictStr, Field(max_length=65_536)]] | None = None
    session: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    tool_call: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None


class IdPayload(WireModel):
    id: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class LogsPayload(WireModel):
    id: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    since: Annotated[int, Field(ge=0)] | None = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000


class KillPayload(WireModel):
    id: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    signal: Literal["TERM", "KILL", "INT", "HUP", "QUIT"] = "TERM"
    grace_ms: Annotated[int, Field(ge=0, le=600_000)] = 5000


class ListPayload(WireModel):
    state: Literal["running", "exited", "lost"] | None = None
    session: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
