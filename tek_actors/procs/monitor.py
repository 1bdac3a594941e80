"""ProcessMonitorActor: tool processes that outlive gateway crashes, with every line of output.

`procs.start` journals its intent, then hands the process to the runner (spawn.py, runner.py),
which detaches it (own session, own process group), sends its output to log files under
`<state>/procs/<id>/` and records its exit in `status.json`. A start is done once per key (a
tool call, an idem key); one a crash left unfinished is settled from the world before anything
is served (runtime/effects.py).

The monitor never waits on a process: on its tick it reads the logs from the stored offsets
into numbered lines (per process, strictly increasing) and journals them as `proc.output`
together with the new offsets, so a restarted monitor resumes exactly where the journal says
and backfills what was written while it was down, with no line twice. The end of a process
comes from its status file, so it is known even if the gateway was down when it ended.

Liveness is the pid plus the process's start time (psutil), never a client connection. On
rehydration a recorded process is adopted only if both still match; a pid that now belongs to
another process is never adopted (nor signalled): the process is recorded as `lost` unless its
status file says how it ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import psutil
import pykka

from tek_actors.config import Config, ConfigDependent
from tek_actors.errors import Conflict, InvalidRequest, InvalidValue, NotFound, Overloaded
from tek_actors.procs.messages import ProcEnded, WatchProcess
from tek_actors.procs.spawn import (
    check_program,
    is_alive,
    launch,
    read_status,
    scrubbed_environment,
    settle_from_world,
)
from tek_actors.procs.state import (
    IdPayload,
    KillPayload,
    Line,
    ListPayload,
    LogsPayload,
    ProcRecord,
    ProcsState,
    StartPayload,
)
from tek_actors.runtime import ActorContext, PersistentActor, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.runtime.effects import Intent, apply_effect, intended, settled
from tek_actors.runtime.killpoints import kill_point
from tek_actors.store import NewEvent

__all__ = ["ProcessMonitorActor", "ProcsState"]

READ_CHUNK = 1 << 20  # per stream per tick
MAX_LINE = 16 << 10  # longer lines are cut (the rest is dropped, with a marker)
BATCH = 500  # lines per proc.output event at most ...
BATCH_BYTES = 256 << 10  # ... and bytes of text: an event must fit in a client's frame
KEEP_FINISHED = 200  # finished processes kept in the state (their logs stay on disk)
KEEP_FINISHED_LINES = 20  # of those, the newest keep their lines in the state too
_SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL, "INT": signal.SIGINT}
_SIGNALS |= {"HUP": signal.SIGHUP, "QUIT": signal.SIGQUIT}


class _Tick:
    __slots__ = ()


class _Escalate:
    __slots__ = ("id",)

    def __init__(self, proc_id: str) -> None:
        self.id = proc_id


def _records_end(status: dict[str, Any], record: ProcRecord) -> bool:
    """status.json says how this very process ended."""
    return "ended_at" in status and status.get("pid") == record.pid


def _batches(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`lines` cut into runs of at most BATCH lines and BATCH_BYTES of text (one at least)."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for line in lines:
        cost = len(line["text"]) + 16
        if out[-1] and (len(out[-1]) >= BATCH or size + cost > BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(line)
        size += cost
    return out


class ProcessMonitorActor(ConfigDependent, PersistentActor[ProcsState]):
    """Options: `procs_dir` (where each process's folder goes), `tick_s` (tail period)."""

    domain = "procs"
    state_model = ProcsState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.procs_dir = Path(ctx.options["procs_dir"])
        self.tick_s = float(ctx.options.get("tick_s", 0.1))
        self.keep_lines = 10_000
        self.max_running = 16
        self.secret_env: set[str] = set()
        self.watchers: dict[str, list[pykka.ActorRef[Any]]] = {}

    def configure(self, config: Config) -> None:
        self.keep_lines = config.limits.proc_output_lines
        self.max_running = config.limits.max_processes
        self.secret_env = {p.api_key_env for p in config.providers.values() if p.api_key_env}

    # -- events ------------------------------------------------------------------------------

    def apply(self, state: ProcsState, event: NewEvent) -> ProcsState:
        data = event.data
        if event.type.startswith("effect."):
            return state.model_copy(update={"intents": apply_effect(state.intents, event)})
        procs = dict(state.procs)
        if event.type == "proc.started":
            procs[data["id"]] = ProcRecord.model_validate(data)
            return state.model_copy(update={"procs": procs})
        record = procs.get(data.get("id", ""))
        if record is None:
            return state
        if event.type == "proc.output":
            lines = [*record.lines, *(Line.model_validate(x) for x in data["lines"])]
            keep = int(data.get("keep", 10_000))
            cut = max(0, len(lines) - keep)
            procs[record.id] = record.model_copy(
                update={
                    "lines": lines[cut:],
                    "dropped": record.dropped + cut,
                    "offsets": data["offsets"],
                    "next_n": data["lines"][-1]["n"] + 1 if data["lines"] else record.next_n,
                }
            )
        elif event.type == "proc.exited":
            fields = ("state", "ended_at", "exit_code", "signal", "reason")
            procs[record.id] = record.model_copy(update={k: data.get(k) for k in fields})
            finished = sorted(
                (p for p in procs.values() if p.state != "running"), key=lambda p: p.ended_at or 0
            )
            for old in finished[:-KEEP_FINISHED]:
                del procs[old.id]
            for old in finished[-KEEP_FINISHED:-KEEP_FINISHED_LINES]:
                if old.lines:
                    dropped = old.dropped + len(old.lines)
                    procs[old.id] = old.model_copy(update={"lines": [], "dropped": dropped})
        return state.model_copy(update={"procs": procs})

    def public_state(self) -> dict[str, Any]:
        return {"procs": [p.public() for p in self.state.procs.values()]}

    # -- start and rehydration -----------------------------------------------------------------

    def on_begin(self) -> None:
        super().on_begin()
        self.procs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for intent in self.state.intents.pending():  # an earlier incarnation's, never finished
            self.persist(*self._reconcile(intent))
        for record in list(self.state.procs.values()):
            if record.state == "running":
                self._check(record, adopting=True)
        self.after(self.tick_s, _Tick())

    # -- requests ----------------------------------------------------------------------------

    @command("procs.start", StartPayload)
    def start_process(self, payload: StartPayload) -> dict[str, Any]:
        """Start a process, once per key: a tool call's id, else the request's idem key. The
        intent is journaled before the runner starts; a request under a key already used gets
        the first start's answer (see runtime/effects.py)."""
        key, request = self._key(payload)
        known = self.state.intents.find(key)
        if known is not None:
            return self._again(known, request)
        running = sum(1 for p in self.state.procs.values() if p.state == "running")
        if running >= self.max_running:
            raise Overloaded(
                f"{running} processes are running, the limit (limits.max_processes)",
                retry_after_ms=1000,
                # the caller decides whether to wait (a session queues the tool call)
                details={"running": running, "limit": self.max_running, "retryable": False},
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
        env = scrubbed_environment(payload.env, self.secret_env)
        check_program(payload.argv[0], env, payload.cwd)
        proc_id = "p-" + uuid.uuid4().hex[:12]
        folder = self.procs_dir / proc_id
        spec = {
            "argv": payload.argv,
            "cwd": payload.cwd,
            "session": payload.session,
            "tool_call": payload.tool_call,
            "dir": str(folder),
            "request": request,
        }
        self.persist(
            intended(
                proc_id,
                "proc.spawn",
                spec,
                key=key,
                boot=self.ctx.journal.boot_id,
                at=self.ctx.clock.time(),
            )
        )
        kill_point("procs.intended")
        folder.mkdir(mode=0o700)
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps({**spec, "env": env, "intent": proc_id}))
        spec_path.chmod(0o600)
        report = launch(folder)
        kill_point("procs.spawned")  # the window between the effect and its record
        intent = self.state.intents.items[proc_id]
        events = self._reconcile(intent) if report is None else self._outcome(intent, report)
        first = events[0].data  # the effect.settled event
        if first["status"] == "done":
            return self.persist(*events, result=lambda s: first["outcome"])  # type: ignore[no-any-return]
        self.persist(*events)
        return self._answer(self.state.intents.items[proc_id])

    def _key(self, payload: StartPayload) -> tuple[str | None, str]:
        """The key this start is done once under, and a digest of what it asks."""
        ticket = self._ticket
        what = json.dumps([payload.argv, payload.cwd, payload.env, payload.tool_call])
        request = uuid.uuid5(uuid.NAMESPACE_OID, what).hex
        if payload.tool_call is not None:
            return f"call:{payload.tool_call}", request
        if ticket is not None and ticket.idem is not None:
            return f"idem:{ticket.idem}", request
        return None, request

    def _again(self, intent: Intent, request: str) -> dict[str, Any]:
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
        if intent.status == "done" and self._ticket is not None and self._ticket.idem:
            outcome = intent.outcome
            self.persist(result=lambda s: outcome)  # the idem record, for the next resend
        return self._answer(intent)

    @staticmethod
    def _answer(intent: Intent) -> dict[str, Any]:
        outcome = intent.outcome or {}
        if intent.status == "done":
            return dict(outcome)
        if intent.free:  # nothing ran
            raise InvalidValue(
                outcome.get("error")
                or "the process runner did not report a start (see the gateway log)",
                details={"path": "argv.0", "expected": "a program that starts"},
            )
        raise Conflict(
            f"whether process {intent.id} started is unknown (the gateway stopped while "
            "starting it); it is never started twice",
            details={"id": intent.id, "outcome": intent.status, "reason": outcome.get("reason")},
        )

    def _outcome(self, intent: Intent, report: str) -> list[NewEvent]:
        """The events that settle a start the runner reported on."""
        folder = Path(intent.spec["dir"])
        if report.startswith("ok "):
            return self._started(intent, read_status(folder))
        shutil.rmtree(folder, ignore_errors=True)
        return [settled(intent.id, "failed", {"error": report.removeprefix("error ")})]

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
        self.log.info("started {} as pid {}: {}", intent.id, status["pid"], spec["argv"][0])
        done = settled(intent.id, "done", {"id": intent.id, "pid": status["pid"]})
        return [done, NewEvent("proc.started", event)]

    def _reconcile(self, intent: Intent) -> list[NewEvent]:
        """Settle a start whose runner never reported (a crash, a kill -9, a hung runner) from
        what the world shows (spawn.settle_from_world)."""
        owner = f"monitor {self.ctx.journal.boot_id}"
        found, detail = settle_from_world(Path(intent.spec["dir"]), intent.id, owner)
        self.log.info("{}: a start left unfinished was found {}", intent.id, found)
        if found == "started":
            return self._started(intent, detail)
        return [settled(intent.id, found, detail)]

    @command("procs.logs", LogsPayload)
    def logs(self, payload: LogsPayload) -> dict[str, Any]:
        record = self._record(payload.id)
        since = payload.since or 0
        out: list[dict[str, Any]] = []
        first = record.lines[0].n if record.lines else record.next_n
        if record.dropped and since < first - 1:
            out.append(
                {
                    "n": first - 1,
                    "stream": "dropped",
                    "text": f"[{first - 1 - since} lines dropped: limits.proc_output_lines is "
                    f"{self.keep_lines}; the whole output is in {record.dir}]",
                }
            )
        start = max(0, since + 1 - first)
        out += [line.model_dump() for line in record.lines[start : start + payload.limit]]
        return {
            "id": record.id,
            "lines": out,
            "state": record.state,
            "exit_code": record.exit_code,
            "signal": record.signal,
            "next": out[-1]["n"] if out else since,
            "last": record.next_n - 1,
        }

    @command("procs.get", IdPayload)
    def get(self, payload: IdPayload) -> dict[str, Any]:
        return self._record(payload.id).public()

    @command("procs.list", ListPayload)
    def list_(self, payload: ListPayload) -> dict[str, Any]:
        items = [
            p.public()
            for p in sorted(self.state.procs.values(), key=lambda p: p.started_at)
            if (payload.state is None or p.state == payload.state)
            and (payload.session is None or p.session == payload.session)
        ]
        return {"items": items}

    @command("procs.kill", KillPayload)
    def kill(self, payload: KillPayload) -> dict[str, Any]:
        record = self._record(payload.id)
        if record.state != "running" or not is_alive(record.pid, record.create_time):
            raise Conflict(
                f"{record.id} is not running (it is {record.state})",
                details={"id": record.id, "state": record.state},
            )
        self._signal(record, _SIGNALS[payload.signal])
        if payload.signal != "KILL" and payload.grace_ms:
            self.after(payload.grace_ms / 1000, _Escalate(record.id))
        return {**record.public(), "signal_sent": payload.signal}

    def _record(self, proc_id: str) -> ProcRecord:
        record = self.state.procs.get(proc_id)
        if record is None:
            raise NotFound(f"there is no process {proc_id!r}", details={"id": proc_id})
        return record

    def _signal(self, record: ProcRecord, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is already gone
            os.killpg(record.pgid, sig)
        self.log.info("sent {} to the process group of {}", signal.Signals(sig).name, record.id)

    # -- the tick: tail, liveness, exits -----------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            for record in list(self.state.procs.values()):
                if record.state == "running":
                    self._check(record)
            self.after(self.tick_s, _Tick())
            return None
        if isinstance(message, WatchProcess):
            watched = self.state.procs.get(message.proc_id)
            if watched is None or watched.state != "running":
                self._tell_end(message.reply_to, message.proc_id, watched)
            else:
                self.watchers.setdefault(message.proc_id, []).append(message.reply_to)
            return None
        if isinstance(message, _Escalate):
            target = self.state.procs.get(message.id)
            if (
                target is not None
                and target.state == "running"
                and is_alive(target.pid, target.create_time)
            ):
                self.log.warning("{} outlived its grace: KILL", target.id)
                self._signal(target, signal.SIGKILL)
            return None
        return super().on_message(message)

    def _check(self, record: ProcRecord, *, adopting: bool = False) -> None:
        folder = Path(record.dir)
        status = read_status(folder)
        if not _records_end(status, record):
            record = self._tail(record, final=False)
            if is_alive(record.pid, record.create_time):
                if adopting:
                    self.log.info("re-adopted {} (pid {})", record.id, record.pid)
                return
            if record.runner_pid is not None and is_alive(record.runner_pid, None):
                return  # the runner is reaping it and about to write the status
            status = read_status(folder)  # the runner is gone: what it wrote is all there will be
        record = self._tail(record, final=True)
        if _records_end(status, record):
            self._exited(record, status.get("exit_code"), status.get("signal"), status["ended_at"])
            return
        reason = (
            "its pid now belongs to another process"
            if psutil.pid_exists(record.pid)
            else "it ended while its runner was gone: the exit status is unknown"
        )
        self.log.warning("{} is lost: {}", record.id, reason)
        self.persist(
            NewEvent(
                "proc.exited",
                {
                    "id": record.id,
                    "state": "lost",
                    "ended_at": self.ctx.clock.time(),
                    "exit_code": None,
                    "signal": None,
                    "reason": reason,
                },
            )
        )
        self._ended(record.id)

    @staticmethod
    def _tell_end(ref: pykka.ActorRef[Any], proc_id: str, record: ProcRecord | None) -> None:
        if record is None:
            tell_quietly(ref, ProcEnded(proc_id, "unknown"))
        else:
            tell_quietly(ref, ProcEnded(proc_id, record.state, record.exit_code, record.signal))

    def _ended(self, proc_id: str) -> None:
        for ref in self.watchers.pop(proc_id, []):
            self._tell_end(ref, proc_id, self.state.procs.get(proc_id))

    def _exited(
        self, record: ProcRecord, exit_code: int | None, sig: int | None, ended_at: float
    ) -> None:
        self.log.info("{} exited (code {}, signal {})", record.id, exit_code, sig)
        self.persist(
            NewEvent(
                "proc.exited",
                {
                    "id": record.id,
                    "state": "exited",
                    "ended_at": ended_at,
                    "exit_code": exit_code,
                    "signal": sig,
                    "duration_s": round(ended_at - record.started_at, 3),
                },
            )
        )
        self._ended(record.id)

    def _tail(self, record: ProcRecord, *, final: bool) -> ProcRecord:
        """Journal what the logs gained since the stored offsets, as numbered lines, in events
        of at most BATCH lines and BATCH_BYTES, in one transaction. `final`: the process has
        ended, so everything is read and a last line without a newline counts too. Returns the
        record as it is now."""
        while True:
            lines: list[dict[str, Any]] = []
            offsets = dict(record.offsets)
            n = record.next_n
            more = False
            for stream in ("stdout", "stderr"):
                data = self._read(Path(record.dir) / f"{stream}.log", offsets[stream])
                whole = len(data) < READ_CHUNK  # the end of the file is in `data`
                more = more or not whole
                end = data.rfind(b"\n") + 1
                if final and whole:
                    end = len(data)
                elif end == 0 and len(data) >= MAX_LINE:
                    end = len(data)  # a very long line with no newline yet: cut it here
                for raw in data[:end].splitlines():
                    text = raw.decode(errors="replace")
                    if len(text) > MAX_LINE:
                        text = text[:MAX_LINE] + " …[line cut]"
                    lines.append({"n": n, "stream": stream, "text": text})
                    n += 1
                offsets[stream] += end
            if offsets == record.offsets:
                return record
            batches = _batches(lines)
            events = [
                NewEvent(
                    "proc.output",
                    {
                        "id": record.id,
                        "lines": batch,
                        "offsets": offsets,  # one transaction: the last batch's offsets count
                        "keep": self.keep_lines,
                    },
                )
                for batch in batches
            ]
            self.persist(*events)
            record = self.state.procs[record.id]
            if not (final and more):
                return record

    @staticmethod
    def _read(path: Path, offset: int) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(READ_CHUNK)
        except FileNotFoundError:
            return b""
