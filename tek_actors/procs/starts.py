"""Starting processes: the intent, the hand-off to a runner, and the answer once it reported.

`procs.start` (on the monitor's thread):

1. A request under a key that already has an intent gets that intent's answer; if that start
   is still in flight, it waits for the same answer (never a second start).
2. The request is checked (limits, argv, cwd, the program); `spec.json` is written, carrying
   the intent's id, beside a FIFO `go` whose write end only this process holds.
3. The zygote (launcher.py) gets the start and forks a runner for it, which reads the spec and
   waits on `go`; only then is the intent queued for the journal (`effect.intended`,
   persist_async: this thread goes on), and "go" is written once it is durable. So the
   runner's wake-up overlaps the intent's commit, and the effect still starts only once its
   intent is durable: a gateway that dies first closes `go` and the runner starts nothing
   (the claim then says `not_started`; a folder whose intent never reached the disk is
   claimed and removed at the next start). The request is deferred. Without a zygote, the
   intent is journaled first and the old runner (spawn.launch) starts it on this thread.
4. The answer comes as messages from the watcher: the zygote's "forked" line (the runner's pid,
   whose exit the watcher is then told to watch) and the runner's report. The report settles
   the intent (`effect.settled` with `proc.started`, in one transaction, pipelined: the
   process's end may be journaled right behind it) and answers every request waiting on it
   once that is durable.

A start whose report never comes is settled from the world (spawn.settle_from_world: the O_EXCL
claim, status.json, TEK_EFFECT_ID): at once when its runner exited without reporting, or its
zygote died before it said it forked; after START_TIMEOUT_S otherwise; at a clean stop; and, in
a later incarnation, before anything is served. A start the world shows was never started
(`not_started`: the monitor won the claim, so no runner ever will) is started once more, as a
new intent under the same key, through the old runner (whatever killed the first try), before
the requests are told it failed: a zygote or runner that died mid-start costs a start nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tek_actors.errors import (
    Conflict,
    InvalidRequest,
    InvalidValue,
    Overloaded,
    StorageUnavailable,
    TekError,
    Unavailable,
)
from tek_actors.procs.launcher import Launcher
from tek_actors.procs.runner import claim
from tek_actors.procs.spawn import (
    START_TIMEOUT_S,
    check_program,
    launch,
    read_status,
    scrubbed_environment,
    settle_from_world,
)
from tek_actors.procs.state import StartPayload
from tek_actors.procs.watcher import Closed, Exited, Line, Watcher
from tek_actors.runtime import Ticket, Timer
from tek_actors.runtime.actor import tell_quietly
from tek_actors.runtime.effects import Intent, intended, settled
from tek_actors.runtime.killpoints import kill_point
from tek_actors.store import NewEvent

if TYPE_CHECKING:
    from tek_actors.procs.monitor import ProcessMonitorActor

__all__ = ["Starts"]

_TEST_HOOKS = ("TEK_TEST_HOOKS", "TEK_TEST_KILL_AT")


@dataclass(slots=True)
class _InFlight:
    """A start handed to a runner that has not reported yet."""

    payload: StartPayload
    key: str | None
    request: str  # a digest of what it asks (a resend must ask the same)
    tickets: list[Ticket]  # every request waiting for its answer, the first one first
    retried: bool = False
    generation: int | None = None  # the zygote that took it (None: the old runner)
    runner_pid: int | None = None  # once the zygote said it forked
    timer: Timer | None = field(default=None, repr=False)
    go: int = -1  # the write end of the runner's FIFO `go`, until the start is settled

    def give_go(self) -> None:
        """The intent is durable: the runner may start the process. The FIFO is empty and
        this is one small write, so it never blocks; the end stays open until the start is
        settled (a FIFO's data goes with its last open end, and the runner may not have
        opened it yet)."""
        if self.go >= 0:
            with contextlib.suppress(OSError):  # then the runner sees EOF: never started
                os.write(self.go, b"go\n")

    def close_go(self) -> None:
        """No go will come now (or it came): a runner still waiting sees EOF and starts
        nothing."""
        fd, self.go = self.go, -1
        if fd >= 0:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class _Launched:
    """The old runner's report (None: none came), for a start begun on the fallback path."""

    proc_id: str
    report: str | None


@dataclass(frozen=True, slots=True)
class _StartTimedOut:
    proc_id: str


@dataclass(frozen=True, slots=True)
class _Reopen:
    """Time to try a new zygote again, after too many died."""


class Starts:
    """The monitor's starts: what is in flight, and its zygote. Runs on the monitor's thread."""

    def __init__(self, host: ProcessMonitorActor) -> None:
        self.host = host
        self.in_flight: dict[str, _InFlight] = {}
        self.launcher: Launcher | None = None
        self.zygotes = 0  # started by this incarnation
        self.stopping = False

    # -- the zygote ----------------------------------------------------------------------------

    def open(self, watcher: Watcher) -> None:
        host = self.host
        self.launcher = Launcher(watcher, host.procs_dir / "zygote.log", host.ctx.clock, host.log)
        self._open_zygote()

    def _open_zygote(self) -> None:
        assert self.launcher is not None
        env = scrubbed_environment(None, self.host.secret_env)
        if self.zygotes == 0:  # test kill points reach the first zygote only: none after it
            env |= {name: os.environ[name] for name in _TEST_HOOKS if name in os.environ}
        self.zygotes += 1
        self.launcher.open(env)

    def close(self) -> None:
        """On every stop, crashes included: no runner waits for a go from this incarnation
        (the next settles its starts from the world)."""
        for flight in self.in_flight.values():
            flight.close_go()
        if self.launcher is not None:
            self.launcher.close()

    def from_zygote(self, generation: int, message: Line | Closed | Exited) -> None:
        """What the watcher says of zygote `generation`: a line on its pipe, or its exit."""
        if isinstance(message, Exited):
            self._zygote_gone(generation)
            return
        if isinstance(message, Closed):
            return
        data = message.data if isinstance(message.data, dict) else {}
        flight = self.in_flight.get(str(data.get("id")))
        if "forked" in data:
            if flight is not None and flight.runner_pid is None:
                flight.runner_pid = int(data["forked"])
                self.host.following.add(data["id"])
                assert self.host.watcher is not None
                self.host.watcher.exit_of(flight.runner_pid, ("runner", data["id"]))
        elif "report" in data:
            if flight is not None:
                self._settle(data["id"], str(data["report"]))
        elif "end" in data and isinstance(data["end"], dict):
            self.host.ended(str(data["id"]), data["end"])  # from any generation's pipe
        else:
            self.host.log.warning("the process zygote said something unknown: {}", data)

    def _zygote_gone(self, generation: int) -> None:
        assert self.launcher is not None
        delay = self.launcher.gone(generation)
        if delay is None:
            return
        if delay == 0:
            self._open_zygote()  # first, so that a start asked again goes to the new one
        else:
            self.host.after(delay, _Reopen())
        for proc_id, flight in list(self.in_flight.items()):
            if flight.generation == generation and flight.runner_pid is None:
                self._settle(proc_id, None)  # it may never have forked: the claim decides

    def runner_gone(self, proc_id: str) -> bool:
        """The runner of `proc_id` exited; True if its start was still in flight (then no
        report is coming: the watcher read its pipes first, and it is settled from the world)."""
        if proc_id not in self.in_flight:
            return False
        self._settle(proc_id, None)
        return True

    def on_message(self, message: Any) -> bool:
        """Handle this module's own messages; False if `message` is not one."""
        if isinstance(message, _Launched):
            if message.proc_id in self.in_flight:
                self._settle(message.proc_id, message.report)
        elif isinstance(message, _StartTimedOut):
            if message.proc_id in self.in_flight:
                self.host.log.warning("{}: no report from its runner in time", message.proc_id)
                self._settle(message.proc_id, None)
        elif isinstance(message, _Reopen):
            if self.launcher is not None and self.launcher.pid is None:
                self._open_zygote()
        else:
            return False
        return True

    # -- a start -------------------------------------------------------------------------------

    def start(self, payload: StartPayload, ticket: Ticket | None) -> dict[str, Any] | None:
        """procs.start, asked by `ticket`: the first start's answer for a used key, else a new
        start (deferred: None is returned, and the request is answered once it is settled)."""
        host = self.host
        key, request = self._key(payload, ticket)
        known = host.latest.intents.find(key)  # a pipelined command: pending intents count
        if known is not None:
            flight = self.in_flight.get(known.id)
            if flight is not None and known.spec.get("request") == request:
                flight.tickets.append(host.defer())  # the same answer, when it comes
                return None
            return self._again(known, request, ticket)
        env = self._prepare(payload)
        self._begin(_InFlight(payload, key, request, [host.defer()]), env)
        return None

    def _prepare(self, payload: StartPayload) -> dict[str, str]:
        """The process's environment, once the request is found startable (else the error)."""
        host = self.host
        running = sum(1 for p in host.latest.procs.values() if p.state == "running")
        running += len(self.in_flight)
        if running >= host.max_running:
            raise Overloaded(
                f"{running} processes are running, the limit (limits.max_processes)",
                retry_after_ms=1000,
                # the caller decides whether to wait (a session queues the tool call)
                details={"running": running, "limit": host.max_running, "retryable": False},
            )
        if not payload.argv[0]:
            raise InvalidValue(
                "argv[0] is empty", details={"path": "argv.0", "expected": "a program"}
            )
        if payload.cwd is not None and not Path(payload.cwd).is_dir():
            raise InvalidValue(
                f"cwd {payload.cwd!r} is not a folder",
                details={"path": "cwd", "expected": "an existing folder"},
            )
        env = scrubbed_environment(payload.env, host.secret_env)
        check_program(payload.argv[0], env, payload.cwd)
        return env

    def _begin(self, flight: _InFlight, env: dict[str, str]) -> None:
        """Hand the start to a runner, which starts it once its intent is durable."""
        host = self.host
        payload = flight.payload
        proc_id = "p-" + uuid.uuid4().hex[:12]
        folder = host.procs_dir / proc_id
        spec = {
            "argv": payload.argv,
            "cwd": payload.cwd,
            "session": payload.session,
            "tool_call": payload.tool_call,
            "dir": str(folder),
            "request": flight.request,
        }
        boot, at = host.ctx.journal.boot_id, host.ctx.clock.time()
        intent = intended(proc_id, "proc.spawn", spec, key=flight.key, boot=boot, at=at)
        folder.mkdir(mode=0o700)
        os.mkfifo(folder / "go", 0o600)
        # O_RDWR: opening a FIFO so never waits for a reader, and keeps what is written there
        # until the runner reads it. Not inherited by any child (Python's default).
        flight.go = os.open(folder / "go", os.O_RDWR | os.O_NONBLOCK)
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps({**spec, "env": env, "intent": proc_id, "go": True}))
        spec_path.chmod(0o600)
        self.in_flight[proc_id] = flight
        generation = None
        if self.launcher is not None and not flight.retried:
            generation = self.launcher.send(folder)
        if generation is None:  # no zygote now, or a second try: the old runner, on this thread
            try:
                host.persist(intent)
            except StorageUnavailable:  # nothing journaled, nothing handed out: undo the folder
                del self.in_flight[proc_id]
                flight.close_go()
                shutil.rmtree(folder, ignore_errors=True)
                raise
            kill_point("procs.intended")
            flight.give_go()
            tell_quietly(host.actor_ref, _Launched(proc_id, launch(folder)))
            return
        kill_point("procs.handed")  # the runner has its folder; the intent is not on disk
        flight.generation = generation
        flight.timer = host.after(START_TIMEOUT_S, _StartTimedOut(proc_id))
        then = host.continuation(lambda ok, value: self._intended(proc_id, ok, value))
        host.persist_async(intent, ticket=then)

    def _intended(self, proc_id: str, ok: bool, value: Any) -> None:
        """The intent of start `proc_id` is durable (`ok`): go. Else the disk refused it (then
        nothing was journaled and nothing starts: its requests are answered with the refusal),
        or this incarnation crashed (the next one settles the start from the world)."""
        flight = self.in_flight.get(proc_id)
        if flight is None:
            return
        if ok:
            kill_point("procs.intended")  # durable, the go not given
            flight.give_go()
            return
        flight.close_go()
        if not isinstance(value, StorageUnavailable):
            return  # crashing: touch nothing more
        del self.in_flight[proc_id]
        if flight.timer is not None:
            flight.timer.cancel()
        folder = self.host.procs_dir / proc_id
        with contextlib.suppress(OSError):  # a full disk may refuse the claim: swept later
            if claim(folder, f"monitor {self.host.ctx.journal.boot_id}"):
                shutil.rmtree(folder, ignore_errors=True)  # its runner never starts anything
        for ticket in flight.tickets:
            self.host.answer(ticket, error=value)

    def sweep_orphans(self) -> None:
        """At rehydration, after settle_earlier: the folders of starts handed out whose intent
        never reached the disk (the gateway died first; their FIFO `go` is still there, as no
        runner read a go). Their runner started nothing and never will once we hold the claim;
        the folder goes. Every other folder (the logs of processes long forgotten) stays."""
        state = self.host.state
        known = {*state.procs, *state.intents.items, *(r.id for r in state.removed)}
        owner = f"monitor {self.host.ctx.journal.boot_id}"
        with os.scandir(self.host.procs_dir) as entries:
            orphans = [
                Path(e.path)
                for e in entries
                if e.name.startswith("p-")
                and e.name not in known
                and os.path.lexists(os.path.join(e.path, "go"))
            ]
        for folder in orphans:
            if claim(folder, owner):
                self.host.log.info("{}: a start whose intent never reached the disk", folder.name)
                shutil.rmtree(folder, ignore_errors=True)

    def _settle(self, proc_id: str, report: str | None) -> None:
        """Journal how start `proc_id` went (from its runner's report, or from the world if
        None) and answer every request waiting for it."""
        host = self.host
        if proc_id not in host.state.intents.items:
            host.settle_pending()  # its intent is on its way to the disk (a runner died waiting)
        flight = self.in_flight.pop(proc_id, None)
        if flight is None:
            return  # the disk refused its intent meanwhile: answered already
        flight.close_go()
        if flight.timer is not None:
            flight.timer.cancel()
        kill_point("procs.spawned")  # the window between the effect and its record
        intent = host.state.intents.items[proc_id]
        events = self._reconcile(intent) if report is None else self._outcome(intent, report)
        first = events[0].data  # the effect.settled event
        if first["status"] == "done":
            # Pipelined: the end of a quick process is journaled right behind this, and the
            # requests are answered (in order) once this is durable.
            outcome = first["outcome"]
            host.persist_async(*events, result=lambda s: outcome, ticket=flight.tickets[0])
            for ticket in flight.tickets[1:]:
                host.reply_in_order(ticket, True, dict(outcome))
            host.crash_unless_durable("proc.started")
            host.follow(host.latest.procs[proc_id])
            return
        host.persist(*events)
        host.watchers.pop(proc_id, None)  # watched by its tool call: no process to watch
        if first["status"] == "not_started" and not self.stopping and not flight.retried:
            self._retry(flight)
            return
        error: TekError = self._refusal(host.state.intents.items[proc_id])
        if first["status"] == "not_started" and self.stopping:
            error = Unavailable(
                "the gateway stopped before the process was started",
                retry_after_ms=1000,
                details={"started": False},
            )
        for ticket in flight.tickets:
            host.answer(ticket, error=error)

    def _retry(self, flight: _InFlight) -> None:
        """A start that provably never happened (its runner or zygote died first): once more,
        as a new intent under the same key, through the old runner (see _begin)."""
        flight.retried, flight.generation, flight.runner_pid = True, None, None
        try:
            env = self._prepare(flight.payload)
        except TekError as err:
            for ticket in flight.tickets:
                self.host.answer(ticket, error=err)
            return
        self.host.log.info("a start that never happened is made again: {}", flight.payload.argv)
        self._begin(flight, env)

    def settle_in_flight(self) -> None:
        """At a clean stop (the zygote and the watcher are closed): settle every start still in
        flight from the world and answer it."""
        self.stopping = True
        for proc_id in list(self.in_flight):
            if proc_id in self.in_flight:  # (a refused intent takes its start with it)
                self._settle(proc_id, None)

    def settle_earlier(self) -> None:
        """At rehydration: settle every start an earlier incarnation left without an outcome
        (nothing is in flight yet, so no live runner of ours can be working on one)."""
        for intent in self.host.state.intents.pending():
            self.host.persist(*self._reconcile(intent))

    # -- keys and answers ----------------------------------------------------------------------

    @staticmethod
    def _key(payload: StartPayload, ticket: Ticket | None) -> tuple[str | None, str]:
        """The key this start is done once under, and a digest of what it asks."""
        what = json.dumps([payload.argv, payload.cwd, payload.env, payload.tool_call])
        request = uuid.uuid5(uuid.NAMESPACE_OID, what).hex
        if payload.tool_call is not None:
            return f"call:{payload.tool_call}", request
        if ticket is not None and ticket.idem is not None:
            return f"idem:{ticket.idem}", request
        return None, request

    def _again(self, intent: Intent, request: str, ticket: Ticket | None) -> dict[str, Any]:
        """A start asked again under a key already used: the first one's answer."""
        if intent.spec.get("request") != request:
            if intent.key and intent.key.startswith("idem:"):
                raise InvalidRequest(
                    "this idem key was already used for a different request",
                    details={"field": "idem", "first_type": "procs.start"},
                )
            raise Conflict(
                "this tool call already started a different process",
                details={"field": "tool_call", "id": intent.id},
            )
        if intent.status == "done" and ticket is not None and ticket.idem:
            outcome = intent.outcome
            self.host.persist(result=lambda s: outcome)  # the idem record, for the next resend
        if intent.status == "done":
            return dict(intent.outcome or {})
        raise self._refusal(intent)

    @staticmethod
    def _refusal(intent: Intent) -> TekError:
        """The error that answers a start that did not happen, or whose outcome is unknown."""
        outcome = intent.outcome or {}
        if intent.free:  # nothing ran
            return InvalidValue(
                outcome.get("error")
                or "the process runner did not report a start (see the gateway log)",
                details={"path": "argv.0", "expected": "a program that starts"},
            )
        return Conflict(
            f"whether process {intent.id} started is unknown (the gateway stopped while "
            "starting it); it is never started twice",
            details={"id": intent.id, "outcome": intent.status, "reason": outcome.get("reason")},
        )

    # -- outcomes ------------------------------------------------------------------------------

    def _outcome(self, intent: Intent, report: str) -> list[NewEvent]:
        """The events that settle a start its runner reported on."""
        folder = Path(intent.spec["dir"])
        status = read_status(folder)
        if report.startswith("ok "):
            if "pid" not in status:  # cannot be (it is written first); the world decides
                return self._reconcile(intent)
            return self._started(intent, status)
        error = status.get("error") or report.removeprefix("error ")  # the report may be cut
        shutil.rmtree(folder, ignore_errors=True)
        return [settled(intent.id, "failed", {"error": error})]

    def _started(self, intent: Intent, status: dict[str, Any]) -> list[NewEvent]:
        spec = intent.spec
        event = {
            "id": intent.id,
            "argv": spec["argv"],
            "cwd": spec["cwd"],
            "session": spec["session"],
            "tool_call": spec["tool_call"],
            "dir": spec["dir"],
            "pid": status["pid"],
            "pgid": status.get("pgid", status["pid"]),
            "create_time": status.get("create_time"),
            "runner_pid": status.get("runner_pid"),
            "started_at": status.get("started_at") or intent.at,
        }
        self.host.log.info("started {} as pid {}: {}", intent.id, status["pid"], spec["argv"][0])
        done = settled(intent.id, "done", {"id": intent.id, "pid": status["pid"]})
        return [done, NewEvent("proc.started", event)]

    def _reconcile(self, intent: Intent) -> list[NewEvent]:
        """Settle a start whose runner never reported (a crash, a kill -9, a runner or zygote
        that died, a hung runner) from what the world shows (spawn.settle_from_world)."""
        owner = f"monitor {self.host.ctx.journal.boot_id}"
        found, detail = settle_from_world(Path(intent.spec["dir"]), intent.id, owner)
        self.host.log.info("{}: a start whose runner did not report was found {}", intent.id, found)
        if found == "started":
            return self._started(intent, detail)
        return [settled(intent.id, found, detail)]
