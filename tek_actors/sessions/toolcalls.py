"""One round of tool calls: every call of one assistant message, from approval to result.

The calls of a round run concurrently. Each one, on the session actor's thread (it never blocks:
every step is a request to another actor whose answer comes back as a message):

    plan          check the arguments, resolve paths (an unplannable call is answered at once)
    request       approvals.request with `begin`: the policy decides, or the call waits for a
                  person; a call the policy approves is journaled `running` in the same commit
                  and answered `begun` (the usual tool call: one command, not two)
    wait          while pending: WatchApproval (sent again every WATCH_S, in case the
                  approval actor restarted and forgot the watch)
    begin         once a person approved: approvals.begin with the policy_version seen:
                  journaled `running` before the tool starts, or refused (the policy changed:
                  denied, or back to pending)
    run           a process tool: procs.start with a WatchProcess by tool call right behind
                  it (the end is told as soon as it is queued, with the append the result
                  comes after: ProcEnded.durable), then approvals.attach once the start is
                  answered (a process that ended first is named in the finish); the end
                  carries a short output (else procs.logs reads it); a file tool: in-process
    result        handed to the session, which journals it; then approvals.finish

After a restart the session resumes the round from the approvals' own record (looked up by the
call's key, `<assistant entry id>#<index>`), never from a fresh request. A call that was running
is driven on through its effect's key, never started a second time: a process tool asks
`procs.start` again under the approval's id, which the process monitor answers with the process
it started for that id (it journals the intent before it starts one), or starts it now if it
provably never did; a write asks the session's own intent log the same way; a read runs again
(it changes nothing). Only where the world cannot tell (runtime/effects.py) is a call `unknown`,
and an `unknown` call is never re-run. The call always runs exactly the arguments its approval
binds.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tek_actors.approvals.messages import WatchApproval
from tek_actors.errors import Conflict, Internal, Overloaded, TekError, Unavailable
from tek_actors.mcp.catalog import split_name
from tek_actors.procs.messages import ProcEnded, WatchProcess
from tek_actors.providers import ToolCall
from tek_actors.runtime.killpoints import kill_point
from tek_actors.sessions.tools import (
    FILE_TOOLS,
    Kind,
    PlannedCall,
    ToolError,
    bound_output,
    confine,
    plan_call,
    run_file_tool,
)
from tek_actors.sessions.writes import UnknownOutcome, write_once

if TYPE_CHECKING:
    from tek_actors.sessions.session import ModelSessionActor

__all__ = ["CallRun", "Later", "ToolRound"]

RETRY_S = 0.5  # another actor was not running: ask again
WATCH_S = 5.0  # how often a watch is sent again while waiting (its actor may have restarted)
LOG_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Later:
    """A step of a call, due after a delay (the session runs `step` when it gets this)."""

    step: Callable[[], None] = field(repr=False)


def _never_started(value: Any) -> bool:
    return isinstance(value, Unavailable) and (value.details or {}).get("started") is False


def _outcome_unknown(value: Any) -> bool:
    return isinstance(value, Conflict) and (value.details or {}).get("outcome") == "unknown"


class ToolRound:
    """The calls of assistant entry `entry_id` that have no result yet."""

    def __init__(
        self, host: ModelSessionActor, entry_id: str, calls: list[ToolCall], done: set[int]
    ) -> None:
        self.host = host
        self.entry_id = entry_id
        self.runs = [CallRun(self, i, call) for i, call in enumerate(calls) if i not in done]

    def start(self, *, recovering: bool) -> None:
        for run in self.runs:
            run.start(recovering=recovering)

    def proc_ended(self, ended: ProcEnded) -> None:
        for run in self.runs:
            early = run.proc_id is None and ended.tool_call is not None  # before its answer
            mine = run.proc_id == ended.proc_id or (early and ended.tool_call == run.approval_id)
            if mine and not run.finished:
                run.proc_ended(ended)

    def approval_changed(self, approval_id: str, view: dict[str, Any]) -> None:
        for run in self.runs:
            if run.approval_id == approval_id and run.waiting == "approval":
                run.waiting = None
                run.approval(view)


class CallRun:
    def __init__(self, round: ToolRound, index: int, call: ToolCall) -> None:
        self.round = round
        self.host = round.host
        self.index = index
        self.call = call
        self.key = f"{round.entry_id}#{index}"
        self.planned: PlannedCall | None = None
        self.approval_id: str | None = None
        self.approved: dict[str, Any] | None = None  # the arguments the approval binds
        self.proc_id: str | None = None
        self.began = False  # this incarnation marked it running: it must finish it
        self.waiting: str | None = None  # "approval" or "process" while a watch is out
        self.finished = False
        self.output: list[str] = []
        self.end_append: Future[Any] | None = None  # the journal append of its process's end

    # -- the steps, in order -----------------------------------------------------------------

    def start(self, *, recovering: bool) -> None:
        if recovering:  # what the approvals know comes first: the call may be under way
            query = {"session": self.host.session_id, "tool_call": self.key}
            self.host.request("approvals", "approvals.list", query, self._looked_up)
        else:
            self._request()

    def _plan(self) -> PlannedCall | None:
        """The call's plan (made once); None, with the call answered, if it cannot run."""
        if self.planned is None:
            try:
                host = self.host
                self.planned = plan_call(self.call, host.config, host.workdir, host.catalog)
            except ToolError as err:
                self.finish("error", {"error": str(err)})
        return self.planned

    def _approved_plan(self, view: dict[str, Any]) -> PlannedCall | None:
        """The plan of an approved call. A file tool's approval binds everything it runs (the
        real path and the identities, checked when it runs), and an MCP call's binds the
        server, the tool and the arguments (its server may not be listed again yet after a
        restart), so after a restart it runs that; any other call is planned again (the config
        may have changed)."""
        tool, bound = view.get("tool"), view.get("arguments")
        if self.planned is None and bound and (tool in FILE_TOOLS or split_name(str(tool))):
            kind: Kind = "mcp" if split_name(str(tool)) else "write_file"
            kind = "read_file" if tool == "read_file" else kind
            self.planned = PlannedCall(str(tool), kind, dict(bound))
        return self._plan()

    def _looked_up(self, ok: bool, value: Any) -> None:
        if not ok:
            self._again(lambda: self.start(recovering=True), value)
            return
        items = value["items"]
        if items:
            self.approval(items[-1])
        else:
            self._request()

    def _request(self) -> None:
        planned = self._plan()
        if planned is None:
            return
        payload = {
            "session": self.host.session_id,
            "tool_call": self.key,
            "tool": planned.tool,
            "arguments": planned.arguments,
            "begin": True,
        }
        self.host.request("approvals", "approvals.request", payload, self._requested)

    def _requested(self, ok: bool, value: Any) -> None:
        if not ok:
            self._again(self._request, value)  # asking twice is one request (same key, digest)
            return
        self.approval(value)

    def approval(self, view: dict[str, Any]) -> None:
        """Act on the approval's state: wait, run, or report why not."""
        self.approval_id = view["id"]
        self.approved = view.get("arguments")
        status = view["status"]
        if status == "pending":
            self.waiting = "approval"
            self._watch_approval()
        elif status == "approved":
            if self._approved_plan(view) is not None:
                self._begin(view["current_policy_version"])
        elif status in ("denied", "expired"):
            reason = view.get("reason") or status
            self.finish(status, {"error": f"the call was {status}: {reason}"})
        elif status == "running":  # begun by our request, or found running after a restart
            self.began = True
            if view.get("begun"):
                kill_point("tools.begun")  # running, and nothing started yet
            if view.get("proc_id"):  # on through its effect's key
                self.proc_id = view["proc_id"]
                self.waiting = "process"
                self._watch_process()
            elif self._approved_plan(view) is not None:
                self._run()
        elif status in ("executed", "failed") and view.get("proc_id"):
            self.proc_id = view["proc_id"]  # it ended while the session was down: its output
            self._read_logs(0)
        elif status in ("executed", "failed"):
            self.finish(status, dict(view.get("result") or {}))
        else:  # unknown, or missing
            self.finish("unknown", {"error": _UNKNOWN, "reason": view.get("reason")})

    def _watch_approval(self) -> None:
        if self.waiting != "approval" or self.finished:
            return
        assert self.approval_id is not None
        self.host.send("approvals", WatchApproval(self.approval_id, self.host.actor_ref))
        self.host.after(WATCH_S, Later(self._watch_approval))

    def _begin(self, policy_version: int) -> None:
        assert self.approval_id is not None
        payload = {"id": self.approval_id, "policy_version": policy_version}
        self.host.request(
            "approvals", "approvals.begin", payload, lambda ok, v: self._begun(ok, v, payload)
        )

    def _begun(self, ok: bool, value: Any, payload: dict[str, Any]) -> None:
        if not ok:
            if _never_started(value):
                self._again(lambda: self._begin(payload["policy_version"]), value)
            else:  # a crash mid-begin, or begun already: what the approval says now decides
                self.host.after(RETRY_S, Later(lambda: self.start(recovering=True)))
            return
        if value["status"] != "running":
            self.approval(value)  # the policy changed: denied, or pending again
            return
        self.began = True
        kill_point("tools.begun")  # running, and nothing started yet
        self._run()

    def _run(self) -> None:
        """Run the call (once: see the module's docstring), with the approved arguments."""
        assert self.planned is not None and self.approval_id is not None  # planned, begun
        planned = PlannedCall(
            self.planned.tool, self.planned.kind, self.approved or self.planned.arguments
        )
        if planned.kind == "mcp":
            payload = {
                **planned.arguments,
                "key": self.approval_id,
                "session": self.host.session_id,
            }
            self.host.request("mcp", "mcp.call", payload, self._mcp_done)
            return
        if planned.kind != "process":
            try:
                confine(planned, self.host.config)
                if planned.kind == "write_file":
                    result = write_once(self.host, self.approval_id, planned)
                else:
                    result = run_file_tool(planned, self.host.config.limits.tool_output_bytes)
            except ToolError as err:
                self.finish("failed", {"error": str(err)})
                return
            except UnknownOutcome as why:
                self._unknown(str(why))
                return
            self.finish("executed", result)
            return
        payload = {
            "argv": planned.arguments["argv"],
            "cwd": planned.arguments["cwd"],
            "session": self.host.session_id,
            "tool_call": self.approval_id,
        }
        self.host.request("procs", "procs.start", payload, self._started)
        # Its end is told as soon as it is queued, even before the start's answer
        self.host.send("procs", WatchProcess(None, self.host.actor_ref, self.approval_id))
        self.waiting = "process"

    def _started(self, ok: bool, value: Any) -> None:
        if self.finished:
            return  # it ended before its start was answered: the finish named the process
        if not ok:
            if _never_started(value):
                self._again(self._run, value)
            elif isinstance(value, Overloaded):  # too many processes: the call waits its turn
                self.host.after((value.retry_after_ms or 1000) / 1000, Later(self._run))
            elif isinstance(value, Internal):  # asked again under its key, it says how it went
                self._again(self._run, value)
            elif _outcome_unknown(value):
                self._unknown(f"procs.start: {value}")
            else:  # refused before anything ran: no such program, no such folder
                self.finish("failed", {"error": str(value)})
            return
        self.proc_id = value["id"]
        attach = {"id": self.approval_id, "proc_id": self.proc_id}
        self.host.request("approvals", "approvals.attach", attach, self._attached)
        self.waiting = "process"
        self._watch_process()

    def _mcp_done(self, ok: bool, value: Any) -> None:
        if not ok:
            if _never_started(value) or isinstance(value, Internal):
                self._again(self._run, value)  # asked again under its key: never sent twice
            elif _outcome_unknown(value):
                self._unknown(f"mcp.call: {value}")
            else:  # refused before anything ran: a server failed or disabled, no such tool
                self.finish("failed", {"error": str(value)})
            return
        limit = self.host.config.limits.tool_output_bytes  # a server may answer anything
        output, truncated = bound_output(str(value.get("output", "")), limit)
        cut = {"truncated": True} if truncated else {}
        if value.get("is_error"):
            self.finish("failed", {"error": output} | _flags(value) | cut)
        else:
            self.finish("executed", {"output": output} | cut)

    def _attached(self, ok: bool, value: Any) -> None:
        if not ok:  # only a restart of the gateway needs it, to learn how the call ended
            self.host.log.warning("{}: approvals.attach failed: {}", self.key, value)

    def _watch_process(self) -> None:
        if self.waiting != "process" or self.finished:
            return
        assert self.proc_id is not None
        self.host.send("procs", WatchProcess(self.proc_id, self.host.actor_ref))
        self.host.after(WATCH_S, Later(self._watch_process))

    def proc_ended(self, ended: ProcEnded) -> None:
        if self.waiting != "process":
            return
        self.waiting = None
        self.proc_id = ended.proc_id
        self.end_append = ended.durable  # its result is journaled after it (ProcEnded)
        if ended.state != "exited":
            self._unknown(f"its process is {ended.state}")
            return
        if ended.lines is None:
            self._read_logs(0)
            return
        # A short process's output comes with its end: procs.logs only for what did not fit.
        page = {
            "lines": list(ended.lines),
            "next": ended.next,
            "last": ended.last,
            "exit_code": ended.exit_code,
            "signal": ended.signal,
        }
        self._logs(True, page, 0)

    def _read_logs(self, since: int) -> None:
        payload = {"id": self.proc_id, "since": since, "limit": LOG_PAGE}
        self.host.request(
            "procs", "procs.logs", payload, lambda ok, value: self._logs(ok, value, since)
        )

    def _logs(self, ok: bool, value: Any, since: int) -> None:
        if not ok:
            self._again(lambda: self._read_logs(since), value)
            return
        self.output += [line["text"] for line in value["lines"]]
        if value["lines"] and value["next"] < value["last"]:
            self._read_logs(value["next"])
            return
        output, truncated = bound_output(
            "\n".join(self.output), self.host.config.limits.tool_output_bytes
        )
        result: dict[str, Any] = {"exit_code": value["exit_code"], "output": output}
        if value.get("signal"):
            result["signal"] = value["signal"]
        if truncated:
            result["truncated"] = True
        self.finish("executed", result)

    # -- endings -----------------------------------------------------------------------------

    def _unknown(self, why: str) -> None:
        self.finish("unknown", {"error": _UNKNOWN, "reason": why})

    def finish(self, status: str, result: dict[str, Any]) -> None:
        """Journal the result (the session does), then close the approval if this began it."""
        if self.finished:
            return
        self.finished = True
        self.waiting = None
        self.host.tool_finished(self, status, result)
        if self.began and self.approval_id is not None:
            outcome = {"executed": "executed", "unknown": "unknown"}.get(status, "failed")
            compact = {k: v for k, v in result.items() if k not in ("output", "content")}
            self._close(outcome, compact)

    def _close(self, outcome: str, result: dict[str, Any]) -> None:
        payload = {"id": self.approval_id, "outcome": outcome, "result": result}
        if self.proc_id is not None:
            payload["proc_id"] = self.proc_id  # (a quick process ends before it is attached)

        def closed(ok: bool, value: Any) -> None:
            if not ok and _never_started(value):
                self._again(lambda: self._close(outcome, result), value)

        self.host.request("approvals", "approvals.finish", payload, closed)

    def _again(self, step: Callable[[], None], error: Any) -> None:
        """A request that did not run (its actor is restarting): try again shortly."""
        if not isinstance(error, TekError) or not (
            _never_started(error) or isinstance(error, (Unavailable, Internal))
        ):
            self.finish("failed", {"error": str(error)})
            return
        self.host.after(RETRY_S, Later(step))


def _flags(value: dict[str, Any]) -> dict[str, Any]:
    return {k: True for k in ("timed_out", "lost") if value.get(k)}


_UNKNOWN = (
    "the outcome of this call is unknown: the gateway restarted while it ran. It was not run "
    "again; check its effects before calling it again."
)
