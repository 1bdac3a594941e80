"""ProcessMonitorActor: tool processes that outlive gateway crashes, with every line of output.

`procs.start` hands the start to a runner (runner.py), which starts it once its intent is
journaled (starts.py), forked by the monitor's zygote (zygote.py, launcher.py; the old runner of
spawn.launch when there is none). The runner detaches the process (own session, own process
group), sends its output to log files under `<state>/procs/<id>/` and records its exit in
`status.json`. A start is done once per key (a tool call, an idem key); one a crash left
unfinished is settled from the world before anything is served (runtime/effects.py). A start is
answered when the runner reports, which comes as a message (starts.py): the monitor's thread
never waits for a runner, so the starts of many sessions run side by side.

The watcher (watcher.py) holds a pidfd on each process's runner: the runner exits right after
it wrote the end to status.json, so the end is read, with the rest of the output, the moment it
is there. The tick (every TICK_S) reads the logs from the stored offsets into numbered lines
(per process, strictly increasing) and journals them as `proc.output` together with the new
offsets, so a restarted monitor resumes exactly where the journal says and backfills what was
written while it was down, with no line twice; it also checks liveness, should a watch ever
miss. The end of a process comes from its status file, so it is known even if the gateway was
down when it ended.

The path of a start and of a quick process's end is pipelined (persist_async): the intent,
`proc.started` and the output with `proc.exited` are queued one behind the other and this
thread goes on; whatever must wait for one of them to be durable (the go to the runner, the
answer to `procs.start`) runs as its continuation. A `WatchProcess` is told of an end as soon
as the end is queued, with the append's future, which the watcher's own appends come after
(ProcEnded.durable: the journal writes them only with or after the end); the end carries the
process's output when it is short.

Liveness is the pid plus the process's start time (psutil), never a client connection. On
rehydration a recorded process is adopted only if both still match; a pid that now belongs to
another process is never adopted (nor signalled): the process is recorded as `lost` unless its
status file says how it ended.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

import psutil
import pykka

from tek_actors.config import Config, ConfigDependent
from tek_actors.errors import Conflict, NotFound, StorageUnavailable
from tek_actors.procs.messages import ProcEnded, WatchProcess
from tek_actors.procs.output import read_output
from tek_actors.procs.spawn import is_alive, read_status
from tek_actors.procs.starts import Starts
from tek_actors.procs.state import (
    IdPayload,
    KillPayload,
    Line,
    ListPayload,
    LogsPayload,
    ProcRecord,
    ProcsState,
    RemovedProc,
    StartPayload,
)
from tek_actors.procs.watcher import Closed, Exited, Watcher, WatcherFailed
from tek_actors.procs.watcher import Line as PipeLine
from tek_actors.runtime import ActorContext, PersistentActor, Ticket, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.runtime.effects import apply_effect
from tek_actors.store import NewEvent

__all__ = ["TICK_S", "ProcessMonitorActor", "ProcsState"]

TICK_S = 0.1  # how often output is tailed (and liveness checked, should a watch miss)
KEEP_FINISHED = 200  # finished processes kept in the state (their logs stay on disk)
KEEP_FINISHED_LINES = 20  # of those, the newest keep their lines in the state too
# Removals remembered: their folders are deleted again at the next start, which comes before any
# new request, so only the last few can be pending; the rest answer a late WatchProcess.
KEEP_REMOVED = 64
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


def _reused(record: ProcRecord) -> bool:
    """A process other than the one started has its pid now (a different start time: an
    orphan's zombie that init has not reaped yet is still the one started)."""
    try:
        created = psutil.Process(record.pid).create_time()
    except psutil.Error:
        return False
    return record.create_time is not None and abs(created - record.create_time) > 0.05


class ProcessMonitorActor(ConfigDependent, PersistentActor[ProcsState]):
    """Options: `procs_dir` (where each process's folder goes), `tick_s` (tail period)."""

    domain = "procs"
    state_model = ProcsState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.procs_dir = Path(ctx.options["procs_dir"])
        self.tick_s = float(ctx.options.get("tick_s", TICK_S))
        self.keep_lines = 10_000
        self.max_running = 16
        self.output_bytes = 64 << 10  # what a ProcEnded carries at most (limits.tool_output_bytes)
        self.secret_env: set[str] = set()
        self.watchers: dict[str, dict[str, pykka.ActorRef[Any]]] = {}  # proc id -> {urn: ref}
        self.following: set[str] = set()  # processes whose runner's (or own) exit is watched
        self.watcher: Watcher | None = None
        self.starts = Starts(self)

    def configure(self, config: Config) -> None:
        self.keep_lines = config.limits.proc_output_lines
        self.max_running = config.limits.max_processes
        self.output_bytes = config.limits.tool_output_bytes
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
        if event.type == "proc.removed":
            del procs[record.id]
            gone = RemovedProc(
                id=record.id,
                dir=record.dir,
                state=record.state,
                exit_code=record.exit_code,
                signal=record.signal,
            )
            removed = [*state.removed, gone][-KEEP_REMOVED:]
            return state.model_copy(update={"procs": procs, "removed": removed})
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

    # -- start, rehydration, stop --------------------------------------------------------------

    def on_begin(self) -> None:
        super().on_begin()
        self.procs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ref = self.actor_ref
        self.watcher = Watcher(lambda message: tell_quietly(ref, message), name=self.name)
        self.watcher.start()
        self.starts.open(self.watcher)  # the zygote's interpreter starts while we rehydrate
        self.starts.settle_earlier()
        self.starts.sweep_orphans()
        for gone in self.state.removed:
            self._delete_folder(gone.dir)  # a crash may have come between journal and delete
        for record in list(self.state.procs.values()):
            if record.state == "running":
                self.follow(record)  # first, so an exit during the check is still told
                self._check(record, adopting=True)
        self.after(self.tick_s, _Tick())

    def on_release(self) -> None:
        self.starts.close()  # the zygote exits once it forked what it read; runners go on
        if self.watcher is not None:
            self.watcher.close()

    def on_end(self) -> None:
        self.starts.settle_in_flight()  # a clean stop answers every start it took
        super().on_end()

    @command("procs.start", StartPayload, pipelined=True)
    def start_process(self, payload: StartPayload) -> dict[str, Any] | None:
        """Start a process, once per key: a tool call's id, else the request's idem key. The
        intent is journaled before the runner starts; a request under a key already used gets
        the first start's answer, when it has one (see starts.py). Answered later (deferred):
        once the runner reported, or the world said how the start went. Pipelined: a start
        does not wait for the one before it to be journaled."""
        return self.starts.start(payload, self._ticket)

    # -- pipelining ----------------------------------------------------------------------------

    def waits_for_pending(self, message: Any) -> bool:
        """A zygote's line (a fork, a runner's report, a process's end) is handled at once,
        against self.latest, and persists with persist_async: the settle of a start and the
        end of its process go to the journal one right behind the other. A WatchProcess too:
        an end it is told of while pending carries its append (ProcEnded.durable)."""
        if isinstance(message, (PipeLine, WatchProcess)):
            return False
        return super().waits_for_pending(message)

    def continuation(self, then: Callable[[bool, Any], None]) -> Ticket:
        """A ticket nobody waits on, for persist_async or reply_in_order: once everything
        queued before it is durable, `then(True, value)` runs on this thread, in order;
        `then(False, error)` if the disk refused it (StorageUnavailable: nothing of it was
        written) or this incarnation is crashing (then `then` must only release things)."""
        return Ticket("procs.continuation", {}, lambda _ticket, ok, value: then(ok, value))

    def crash_unless_durable(self, what: str) -> None:
        """What was persisted so far must reach the disk: if the disk refuses it, crash, so
        that the next incarnation settles from the world what this one could not record
        (a process that started, say), as a blocking persist that failed would have."""

        def check(ok: bool, value: Any) -> None:
            if not ok and isinstance(value, StorageUnavailable):
                raise RuntimeError(f"{what} could not be journaled") from value

        self.reply_in_order(self.continuation(check), True, 0)

    # -- requests ----------------------------------------------------------------------------

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

    @command("procs.remove", IdPayload)
    def remove(self, payload: IdPayload) -> dict[str, Any]:
        """Forget a finished process: `proc.removed` is journaled (answered once durable; a
        resend under the same idem key gets this answer again), which drops its record and the
        lines kept with it; then its folder (spec, status, the stdout/stderr logs) is deleted.
        Its `proc.output` events stay in the journal until retention prunes them (events are
        never edited). A running process is a `conflict`: kill it first."""
        record = self._record(payload.id)
        if record.state == "running":
            raise Conflict(
                f"{record.id} is still running: kill it first (`tek procs kill {record.id}`)",
                details={"id": record.id, "state": record.state},
            )
        result = {"id": record.id, "removed": True, "state": record.state}
        self.persist(NewEvent("proc.removed", {"id": record.id}), result=lambda s: result)
        self._delete_folder(record.dir)
        return result

    def _delete_folder(self, folder: str) -> None:
        path = Path(folder)
        if path.parent != self.procs_dir:  # only ever a process's own folder under procs/
            self.log.warning("not deleting {}: it is not under {}", path, self.procs_dir)
            return
        shutil.rmtree(path, ignore_errors=True)  # gone already (a second try) is the aim

    def _record(self, proc_id: str) -> ProcRecord:
        record = self.state.procs.get(proc_id)
        if record is None:
            raise NotFound(f"there is no process {proc_id!r}", details={"id": proc_id})
        return record

    def _signal(self, record: ProcRecord, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is already gone
            os.killpg(record.pgid, sig)
        self.log.info("sent {} to the process group of {}", signal.Signals(sig).name, record.id)

    # -- messages: the tick, the watcher, watches of other actors ------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, PipeLine | Closed | Exited):
            self._watched(message)
            return None
        if isinstance(message, _Tick):
            for record in list(self.state.procs.values()):
                if record.state == "running":
                    self._check(record)
            self.after(self.tick_s, _Tick())
            return None
        if isinstance(message, WatchProcess):
            self._watch(message)
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
        if isinstance(message, WatcherFailed):
            raise RuntimeError("the process watcher failed") from message.error
        if self.starts.on_message(message):
            return None
        return super().on_message(message)

    def _watched(self, message: PipeLine | Closed | Exited) -> None:
        kind, key = cast(tuple[str, Any], message.token)
        if kind == "zygote":
            self.starts.from_zygote(key, message)
            return
        if not isinstance(message, Exited):
            return
        self.following.discard(key)
        if kind == "runner" and self.starts.runner_gone(key):
            return  # it died before it reported: the start is settled from the world
        record = self.latest.procs.get(key)
        if record is not None and record.state == "running":
            self._check(record)
            record = self.latest.procs[key]
            if record.state == "running":  # its runner is gone, the process is not
                self.follow(record, runner_gone=True)

    def ended(self, proc_id: str, end: dict[str, Any]) -> None:
        """The runner of `proc_id` says how it ended (what it is writing to status.json)."""
        record = self.latest.procs.get(proc_id)
        if record is not None and record.state == "running" and _records_end(end, record):
            self._check(record, status=end)

    def follow(self, record: ProcRecord, *, runner_gone: bool = False) -> None:
        """Have the watcher tell this actor when the process's end is on disk (its runner
        exits after writing it), or, without a runner, when the process itself exits."""
        if record.id in self.following or self.watcher is None:
            return
        self.following.add(record.id)
        if record.runner_pid is not None and not runner_gone:
            self.watcher.exit_of(record.runner_pid, ("runner", record.id))
        elif is_alive(record.pid, record.create_time):
            # Alive just now and alive again below: the pidfd names this very process.
            self.watcher.exit_of(record.pid, ("proc", record.id))
            if not is_alive(record.pid, record.create_time):
                self.following.discard(record.id)
                tell_quietly(self.actor_ref, Exited(("proc", record.id)))
        else:
            self.following.discard(record.id)
            tell_quietly(self.actor_ref, Exited(("proc", record.id)))

    # -- output, liveness, exits -------------------------------------------------------------

    def _check(
        self, record: ProcRecord, *, adopting: bool = False, status: dict[str, Any] | None = None
    ) -> None:
        """Tail the output; record the end if the process ended (`status`: its end as the
        runner said it, else status.json is read)."""
        folder = Path(record.dir)
        status = status if status is not None else read_status(folder)
        if not _records_end(status, record):
            record = self._tail(record, final=False)
            if is_alive(record.pid, record.create_time):
                if adopting:
                    self.log.info("re-adopted {} (pid {})", record.id, record.pid)
                return
            if record.runner_pid is not None and is_alive(record.runner_pid, None):
                return  # the runner is reaping it and about to write the status
            status = read_status(folder)  # the runner is gone: what it wrote is all there will be
        if _records_end(status, record):
            ended_at = status["ended_at"]
            self.log.info(
                "{} exited (code {}, signal {})",
                record.id,
                status.get("exit_code"),
                status.get("signal"),
            )
            end = {
                "id": record.id,
                "state": "exited",
                "ended_at": ended_at,
                "exit_code": status.get("exit_code"),
                "signal": status.get("signal"),
                "duration_s": round(ended_at - record.started_at, 3),
            }
        else:
            reason = (
                "its pid now belongs to another process"
                if _reused(record)
                else "it ended while its runner was gone: the exit status is unknown"
            )
            self.log.warning("{} is lost: {}", record.id, reason)
            end = {
                "id": record.id,
                "state": "lost",
                "ended_at": self.ctx.clock.time(),
                "exit_code": None,
                "signal": None,
                "reason": reason,
            }
        # The rest of the output and the end in one transaction. The watchers (a session,
        # through WatchProcess) are told at once, with that append's future: what they journal
        # because of the end comes after it (ProcEnded), and procs.logs waits for it.
        self._tail(record, final=True, then=NewEvent("proc.exited", end))
        durable = self.pending_append()
        for ref in self.watchers.pop(record.id, {}).values():
            self._tell_end(ref, record.id, durable)

    def _watch(self, message: WatchProcess) -> None:
        """Against the newest state (pending events count: see ProcEnded.durable)."""
        latest, proc_id = self.latest, message.proc_id
        if proc_id is None:  # by its tool call, right behind its procs.start
            intent = latest.intents.find(f"call:{message.tool_call}")
            if intent is None or not (
                intent.id in self.starts.in_flight or intent.id in latest.procs
            ):
                return  # no process started for it: the start's answer says why
            proc_id = intent.id
        watched = latest.procs.get(proc_id)
        if proc_id in self.starts.in_flight or (watched is not None and watched.state == "running"):
            self.watchers.setdefault(proc_id, {})[message.reply_to.actor_urn] = message.reply_to
            return
        pending = self.state.procs.get(proc_id) is not watched  # its end is on its way to disk
        self._tell_end(message.reply_to, proc_id, self.pending_append() if pending else None)

    def _tell_end(
        self, ref: pykka.ActorRef[Any], proc_id: str, durable: Future[Any] | None = None
    ) -> None:
        """Tell `ref` how `proc_id` ended, as the newest state has it (`durable`: the append
        that holds the end, while it is pending)."""
        record = self.latest.procs.get(proc_id)
        gone = next((r for r in self.latest.removed if r.id == proc_id), None)
        if record is None and gone is not None:  # removed: it ended as it ended
            ended = ProcEnded(proc_id, gone.state, gone.exit_code, gone.signal, durable=durable)
            tell_quietly(ref, ended)
        elif record is None:
            tell_quietly(ref, ProcEnded(proc_id, "unknown"))
        else:
            lines, upto = self._short_output(record)
            last = record.next_n - 1
            tell_quietly(
                ref,
                ProcEnded(
                    proc_id,
                    record.state,
                    record.exit_code,
                    record.signal,
                    lines,
                    upto,
                    last,
                    durable,
                    record.tool_call,
                ),
            )

    def _short_output(self, record: ProcRecord) -> tuple[tuple[dict[str, Any], ...] | None, int]:
        """The output lines to send with a ProcEnded, as procs.logs gives them, and the last n
        among them: from the first line, at most self.output_bytes of text (the rest is read
        with procs.logs). None when lines were dropped from memory (procs.logs marks where)."""
        if record.dropped:
            return None, 0
        out: list[dict[str, Any]] = []
        size = 0
        for line in record.lines:
            size += len(line.text.encode()) + 1
            if size > self.output_bytes and out:
                break
            out.append(line.model_dump())
        return tuple(out), out[-1]["n"] if out else 0

    def _tail(self, record: ProcRecord, *, final: bool, then: NewEvent | None = None) -> ProcRecord:
        """Journal what the logs gained since the stored offsets, as numbered lines, in events
        of at most output.BATCH lines and BATCH_BYTES (with `then` after the last of them, in
        its transaction). `final`: the process has ended, so everything is read. Returns the
        record as it is now."""
        while True:
            events, more = read_output(record, final=final, keep=self.keep_lines)
            last = not (final and more)
            if last and then is not None:
                events.append(then)
            if events:
                self.persist_async(*events, ticket=self.continuation(lambda ok, value: None))
            record = self.latest.procs.get(record.id, record)  # (an old end may be pruned at once)
            if last:
                return record
