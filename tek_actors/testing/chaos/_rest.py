"""The system at rest: `_Rest` waits (bounded) until nothing is open any more, then gathers
what the gateway and the disk hold (`_Final`) for the checks. Runs on the controller thread,
once the load has stopped; each call makes and closes its own link or uses the caller's."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tek_actors.testing.chaos._follower import _Follower
from tek_actors.testing.chaos._link import _Link, _ReadError
from tek_actors.testing.chaos._report import CONFIG_PATH
from tek_actors.testing.chaos._state import _Run

OPEN_APPROVAL = frozenset({"pending", "approved", "running"})


@dataclass
class _Final:
    """What the gateway and the disk say at rest."""

    head: int = 0
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    session_list: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    procs: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    config_value: Any = None
    folders: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> argv, mtime
    tool_marker: list[str] = field(default_factory=list)
    proc_marker: list[str] = field(default_factory=list)


class _Rest:
    """Quiescence and the final state, for the run's sessions, approvals and processes
    (`procs_dir`: the gateway's process folders)."""

    def __init__(self, run: _Run, follower: _Follower, procs_dir: Path) -> None:
        self.run = run
        self.follower = follower
        self.procs_dir = procs_dir

    def quiesce(self, when: str) -> bool:
        """Poll (bounded) until every session is idle, no approval is open, no process runs
        and the follower has every event; `no_quiescence`, naming what is open, if not."""
        link = _Link(self.run, "quiesce")
        deadline = time.monotonic() + self.run.settings.quiesce_timeout_s
        try:
            while True:
                still = self._still_open(link)
                if not still:
                    return True
                if time.monotonic() > deadline:
                    self.run.found("no_quiescence", when=when, still_open=still[:20])
                    return False
                self.run.pause(0.2)
        finally:
            link.close()

    def _still_open(self, link: _Link) -> list[str]:
        still = []
        for session in self._sessions():
            view = link.read("sessions.get", {"id": session, "since": 1 << 30})
            if view["queue"] or view["turn"] is not None:
                still.append(f"session {session}: queue {view['queue']}, turn {view['turn']}")
        for item in link.read("approvals.list", {})["items"]:
            if item["status"] in OPEN_APPROVAL:
                still.append(f"approval {item['id']} {item['status']}")
        for proc in link.read("procs.list", {"state": "running"})["items"]:
            still.append(f"process {proc['id']} running")
        head = link.read("gateway.ping")["head_seq"]
        if self.follower.last_seq < head:
            still.append(f"follower at seq {self.follower.last_seq} of {head}")
        return still

    def gather(self, link: _Link, *, logs: bool) -> _Final:
        """What the gateway and the disk hold now (with every acknowledged process's
        procs.logs if `logs`); `session_lost` for a session the gateway does not know."""
        s = self.run
        final = _Final(head=link.read("gateway.ping")["head_seq"])
        for session in self._sessions():
            try:
                final.sessions[session] = link.read("sessions.get", {"id": session})
            except _ReadError as exc:
                s.found("session_lost", session=session, error=exc.error)
        final.session_list = link.read("sessions.list", {})["items"]
        final.approvals = link.read("approvals.list", {})["items"]
        final.procs = link.read("procs.list", {})["items"]
        final.config_value = link.read("config.get", {"path": CONFIG_PATH})["value"]
        known = {p["id"] for p in final.procs}
        for op in s.ops if logs else []:
            if op.kind == "procs.start" and op.acked and op.result["id"] in known:
                final.logs[op.result["id"]] = self._logs(link, op.result["id"])
        for spec in sorted(self.procs_dir.glob("*/spec.json")):
            with contextlib.suppress(OSError):
                final.folders[spec.parent.name] = (_spec_argv(spec), spec.stat().st_mtime)
        final.tool_marker = _lines(s.tool_marker)
        final.proc_marker = _lines(s.proc_marker)
        return final

    @staticmethod
    def _logs(link: _Link, proc_id: str) -> list[dict[str, Any]]:
        """procs.logs from the start, in pages of 16 lines."""
        lines: list[dict[str, Any]] = []
        since = 0
        for _ in range(10_000):
            page = link.read("procs.logs", {"id": proc_id, "since": since, "limit": 16})
            lines += page["lines"]
            if not page["lines"] or page["next"] >= page["last"]:
                break
            since = page["next"]
        return lines

    def _sessions(self) -> list[str]:
        return [*self.run.plain_sessions, *self.run.tool_sessions]


def _lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _spec_argv(spec: Path) -> str:
    """The argv of a process folder's spec.json, joined (its whole text if it has none)."""
    text = spec.read_text()
    try:
        argv = json.loads(text).get("argv")
    except (ValueError, AttributeError):
        return text
    return " ".join(str(a) for a in argv) if isinstance(argv, list) else text
