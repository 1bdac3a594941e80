"""ApprovalActor: a person decides before a tool runs; a tool call runs exactly once or never.

Each tool call (session, tool_call id, exact arguments) is one approval, moved only by journaled
events:

    pending --decide--> approved | denied          pending --expiry--> expired
    approved --begin (durable, before the tool starts)--> running
    running --finish--> executed | failed          running, after a crash --> executed | unknown

The policy (`approvals.*` in config) decides at request time: `auto` approves, `deny` denies,
`ask` leaves it pending for a person. `policy_version` grows with every policy change. The
caller asks again at the moment the tool is about to run (`approvals.begin` with the
policy_version it saw): if the policy changed since, the call is evaluated again, so no decision
is ever cached outside this actor. A request with `begin` set also begins a call the policy
approves at once, in the same command and commit (requested and running are durable together:
the policy it was just evaluated under is the current one). A call marked running is never
started a second time: after a crash, the process monitor says whether its process ended (then
it is `executed`, with the exit); a call whose process was not known yet is driven on by its
session through the call's id (the monitor journals its intent before it starts a process, so
it knows whether it did). Where nobody can tell, it is `unknown`, which the caller must report
as such and never re-run.

The tool-call path (request, decide, begin, attach, finish) is pipelined (runtime/persistent.py):
each command is validated against the state with every pending event in it, and answered in
order once durable, so many sessions' calls share one commit. Reads (get, list) answer from the
durable state at once. The state is bounded: an approval that is over (denied, expired,
executed, failed, unknown) stays in it while it is among the newest `keep_finished` finished
ones; an older one leaves it through an `approval.archived` event, and the same transaction
keeps its record in the journal's kept records by id and by call (`id:<id>`,
`call:<tool_call>\x00<session>`), where get, list by tool_call, and a request asked again find
it after any restart.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr, model_validator

from tek_actors.approvals.messages import ApprovalChanged, WatchApproval
from tek_actors.approvals.policy import arguments_digest, evaluate, policy_digest, remembered
from tek_actors.config import Config, ConfigDependent
from tek_actors.config.model import ApprovalsConfig
from tek_actors.errors import Conflict, NotFound, TekError
from tek_actors.procs.messages import ProcEnded, WatchProcess
from tek_actors.runtime import ActorContext, PersistentActor, Ticket, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.store import NewEvent
from tek_actors.wire import WireModel

__all__ = ["Approval", "ApprovalActor", "ApprovalsState"]

SWEEP_S = 30.0
RECOVER_RETRY_S = 0.5
KEEP_FINISHED = 1000  # finished approvals kept in the state (and its snapshots)
Status = Literal[
    "pending", "approved", "denied", "expired", "running", "executed", "failed", "unknown"
]
FINAL = frozenset({"denied", "expired", "executed", "failed", "unknown"})

Id = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Key = Annotated[StrictStr, Field(min_length=1, max_length=256)]


class Approval(BaseModel):
    id: str
    session: str
    tool_call: str
    tool: str
    arguments: dict[str, Any]
    digest: str
    status: Status = "pending"
    decided_by: str | None = None  # "policy" or "person"
    reason: str | None = None
    policy_version: int = 0  # the policy the decision was made under
    requested_at: float
    expires_at: float | None = None
    decided_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    proc_id: str | None = None
    result: dict[str, Any] | None = None


class ApprovalsState(BaseModel):
    items: dict[str, Approval] = {}
    by_call: dict[str, str] = {}  # "session\x00tool_call" -> the newest approval's id
    finished: list[str] = []  # ids of the finished items, in the order they finished
    policy_version: int = 0
    policy_digest: str = ""

    @model_validator(mode="after")
    def _finished_of_an_older_snapshot(self) -> ApprovalsState:
        # A snapshot from before `finished` existed: its finished items, oldest first.
        if "finished" not in self.model_fields_set and self.items:
            done = [i for i in self.items.values() if i.status in FINAL]
            done.sort(key=lambda i: i.finished_at or i.decided_at or i.requested_at)
            self.finished = [i.id for i in done]
        return self


class RequestPayload(WireModel):
    session: Key
    tool_call: Key
    tool: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    arguments: dict[str, Any] = Field(default_factory=dict)
    # Begin it too if it is (or the policy now makes it) approved: request and begin in one
    # command, one commit; answered `running` with `begun: true` when it may start now.
    begin: StrictBool = False


class DecidePayload(WireModel):
    id: Id
    decision: Literal["approve", "deny"]
    remember: bool = False
    reason: Annotated[StrictStr, Field(max_length=1000)] | None = None


class BeginPayload(WireModel):
    id: Id
    policy_version: Annotated[int, Field(ge=0)]


class AttachPayload(WireModel):
    id: Id
    proc_id: Id


class FinishPayload(WireModel):
    id: Id
    # unknown: the caller lost track of the call (it restarted while the call ran)
    outcome: Literal["executed", "failed", "unknown"]
    result: dict[str, Any] | None = None
    proc_id: Id | None = None  # the process that ran it, if not attached (a quick one)


class IdPayload(WireModel):
    id: Id


class ListPayload(WireModel):
    status: Status | None = None
    session: Key | None = None
    tool_call: Key | None = None


class _Sweep:
    __slots__ = ()


class _Recover:
    __slots__ = ()


class _Remembered:
    __slots__ = ("item_id", "ok", "ticket", "value")

    def __init__(self, ticket: Ticket, item_id: str, ok: bool, value: Any) -> None:
        self.ticket, self.item_id, self.ok, self.value = ticket, item_id, ok, value


def _call_key(session: str, tool_call: str) -> str:
    return f"{session}\x00{tool_call}"


def _kept_call(session: str, tool_call: str) -> str:
    return f"call:{tool_call}\x00{session}"


def _change(event_type: str, item: Approval, **fields: Any) -> NewEvent:
    """A transition of `item`: its id and session (so a client can follow one session's calls
    from the events alone) and what changed."""
    return NewEvent(event_type, {"id": item.id, "session": item.session, **fields})


class ApprovalActor(ConfigDependent, PersistentActor[ApprovalsState]):
    domain = "approvals"
    state_model = ApprovalsState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.policy = ApprovalsConfig()
        self.sweep_s = float(ctx.options.get("sweep_s", SWEEP_S))
        self.keep_finished = max(1, int(ctx.options.get("keep_finished", KEEP_FINISHED)))
        self.watchers: dict[str, dict[str, Any]] = {}  # approval id -> {actor urn: ref}

    # -- events ------------------------------------------------------------------------------

    def apply(self, state: ApprovalsState, event: NewEvent) -> ApprovalsState:
        data = event.data
        if event.type == "approval.policy":
            return state.model_copy(
                update={"policy_version": data["version"], "policy_digest": data["digest"]}
            )
        if event.type == "approval.requested":
            item = Approval.model_validate(data)
            key = _call_key(item.session, item.tool_call)
            update: dict[str, Any] = {
                "items": {**state.items, item.id: item},
                "by_call": {**state.by_call, key: item.id},
            }
            if item.status in FINAL:
                update["finished"] = [*state.finished, item.id]
            return state.model_copy(update=update)
        current = state.items.get(data.get("id", ""))
        if current is None:
            return state
        if event.type == "approval.archived":
            key = _call_key(current.session, current.tool_call)
            items = {k: v for k, v in state.items.items() if k != current.id}
            by_call = state.by_call
            if by_call.get(key) == current.id:
                by_call = {k: v for k, v in by_call.items() if k != key}
            finished = [i for i in state.finished if i != current.id]
            return state.model_copy(
                update={"items": items, "by_call": by_call, "finished": finished}
            )
        changes = {k: v for k, v in data.items() if k in Approval.model_fields and k != "id"}
        update = {"items": {**state.items, current.id: current.model_copy(update=changes)}}
        if changes.get("status") in FINAL and current.status not in FINAL:
            update["finished"] = [*state.finished, current.id]
        return state.model_copy(update=update)

    def public_state(self) -> dict[str, Any]:
        pending = [
            i.model_dump(mode="json") for i in self.state.items.values() if i.status == "pending"
        ]
        return {"pending": pending, "policy_version": self.state.policy_version}

    # -- configuration and start -------------------------------------------------------------

    def configure(self, config: Config) -> None:
        self.policy = config.approvals
        digest = policy_digest(self.policy)
        known = self.state.policy_digest or policy_digest(ApprovalsConfig())  # version 0
        if digest != known:
            version = self.state.policy_version + 1
            self.persist(NewEvent("approval.policy", {"version": version, "digest": digest}))

    def on_begin(self) -> None:
        super().on_begin()
        self.after(self.sweep_s, _Sweep())
        if any(i.status == "running" for i in self.state.items.values()):
            self.actor_ref.tell(_Recover())

    # -- requests ----------------------------------------------------------------------------

    @command("approvals.request", RequestPayload, pipelined=True)
    def request(self, payload: RequestPayload) -> dict[str, Any]:
        state = self.latest
        digest = arguments_digest(payload.arguments)
        known = self._by_call(state, payload.session, payload.tool_call)
        if known is not None and known.digest == digest:  # the same call asked twice: one request
            if payload.begin and known.status == "approved":
                return self._begun(known, self._begin_events(known, state, None))
            return self._view(known, state)
        now = self.ctx.clock.time()
        action, why = evaluate(self.policy, payload.tool, payload.arguments)
        item_id = "a-" + uuid.uuid4().hex[:12]
        item = {
            "id": item_id,
            "session": payload.session,
            "tool_call": payload.tool_call,
            "tool": payload.tool,
            "arguments": payload.arguments,
            "digest": digest,
            "status": "pending",
            "policy_version": state.policy_version,
            "requested_at": now,
            "expires_at": now + self.policy.expire_after_s if action == "ask" else None,
        }
        if action != "ask":  # decided at once: one event says so (nobody is asked in vain)
            item |= {
                "status": "approved" if action == "auto" else "denied",
                "decided_by": "policy",
                "reason": why,
                "decided_at": now,
            }
        requested = NewEvent("approval.requested", item)
        if payload.begin and action == "auto":
            # Approved under the policy as it is now, so begin's check is already made: one
            # commit holds both, and the caller may start the tool as soon as it is answered.
            running = NewEvent(
                "approval.running",
                {"id": item_id, "session": payload.session, "status": "running", "started_at": now},
            )
            return self._pipelined(item_id, requested, running, begun=True)
        return self._pipelined(item_id, requested)

    @command("approvals.decide", DecidePayload, pipelined=True)
    def decide(self, payload: DecidePayload) -> Any:
        if payload.remember:  # a policy change follows: on the durable state, as before
            refused = self.settle_pending()
            if refused is not None:
                raise refused
        state = self.latest
        item = self._item(payload.id, state)
        if item.status != "pending":
            raise Conflict(
                f"{item.id} is already {item.status}; it cannot be decided again",
                details={"id": item.id, "status": item.status},
            )
        reason = (
            payload.reason
            or f"{'approved' if payload.decision == 'approve' else 'denied'} by a person"
        )
        event = self._decided(item, payload.decision == "approve", "person", reason, state)
        if not payload.remember:
            return self._pipelined(item.id, event)
        ticket = self.defer()
        self._persist_now(event)
        action = "auto" if payload.decision == "approve" else "deny"
        path, value = remembered(self.policy, item.tool, item.arguments, action)
        ref = self.actor_ref
        change = Ticket(
            "config.set",
            {"path": path, "value": value},
            lambda t, ok, v: tell_quietly(ref, _Remembered(ticket, item.id, ok, v)),
        )
        if not self.send("config", change):
            self.answer(ticket, {**self._view(self.state.items[item.id]), "remembered": False})
        return None

    @command("approvals.begin", BeginPayload, pipelined=True)
    def begin(self, payload: BeginPayload) -> dict[str, Any]:
        """The tool is about to run: mark it running (durably) if it may; else say why not."""
        state = self.latest
        item = self._item(payload.id, state)
        if item.status == "running" or item.status in ("executed", "failed", "unknown"):
            raise Conflict(
                f"{item.id} was already started ({item.status}); it never runs twice",
                details={"id": item.id, "status": item.status},
            )
        if item.status != "approved":
            return self._view(item, state)  # pending, denied or expired: it must not run
        return self._begun(item, self._begin_events(item, state, payload.policy_version))

    @command("approvals.attach", AttachPayload, pipelined=True)
    def attach(self, payload: AttachPayload) -> dict[str, Any]:
        """The process that runs this call (so a restart can learn how it ended)."""
        item = self._item(payload.id, self.latest)
        if item.status != "running":
            raise Conflict(f"{item.id} is {item.status}, not running", details={"id": item.id})
        return self._pipelined(item.id, _change("approval.attached", item, proc_id=payload.proc_id))

    @command("approvals.finish", FinishPayload, pipelined=True)
    def finish(self, payload: FinishPayload) -> dict[str, Any]:
        item = self._item(payload.id, self.latest)
        if item.status != "running":
            raise Conflict(
                f"{item.id} is {item.status}, not running",
                details={"id": item.id, "status": item.status},
            )
        event = _change(
            f"approval.{payload.outcome}",
            item,
            status=payload.outcome,
            finished_at=self.ctx.clock.time(),
            result=payload.result,
            **({"proc_id": payload.proc_id} if payload.proc_id else {}),
        )
        return self._pipelined(item.id, event)

    @command("approvals.get", IdPayload, reads=True)
    def get(self, payload: IdPayload) -> dict[str, Any]:
        return self._view(self._item(payload.id, self.state))

    @command("approvals.list", ListPayload, reads=True)
    def list_(self, payload: ListPayload) -> dict[str, Any]:
        """The state's approvals (every open one, the newest finished ones); with `tool_call`,
        also the archived record of that call."""
        found = {i.id: i for i in self.state.items.values()}
        if payload.tool_call is not None:
            if payload.session is not None:
                archived = [
                    self.ctx.journal.kept(self.name, _kept_call(payload.session, payload.tool_call))
                ]
            else:
                archived = self.ctx.journal.kept_under(self.name, _kept_call("", payload.tool_call))
            for record in archived:
                if record is not None and record["id"] not in found:
                    found[record["id"]] = Approval.model_validate(record)
        items = [
            self._view(i)
            for i in sorted(found.values(), key=lambda i: i.requested_at)
            if (payload.status is None or i.status == payload.status)
            and (payload.session is None or i.session == payload.session)
            and (payload.tool_call is None or i.tool_call == payload.tool_call)
        ]
        return {"items": items, "policy_version": self.state.policy_version}

    # -- internal ----------------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _Sweep):
            self._sweep()
            if any(i.status == "running" and i.proc_id for i in self.state.items.values()):
                self._recover()  # again: a monitor that restarted meanwhile forgot the watch
            self.after(self.sweep_s, _Sweep())
            return None
        if isinstance(message, _Recover):
            self._recover()
            return None
        if isinstance(message, ProcEnded):
            self._proc_ended(message)
            return None
        if isinstance(message, WatchApproval):
            self.watchers.setdefault(message.approval_id, {})[message.reply_to.actor_urn] = (
                message.reply_to
            )
            self._notify_watchers()
            return None
        if isinstance(message, _Remembered):
            # The decision is durable already; the policy change is applied (or refused) now.
            view = self._view(self._item(message.item_id, self.state)) | {"remembered": message.ok}
            if not message.ok and isinstance(message.value, TekError):
                view["remember_error"] = message.value.message
            self.answer(message.ticket, view)
            return None
        return super().on_message(message)

    def on_persisted(self) -> None:
        self._notify_watchers()

    def waits_for_pending(self, message: Any) -> bool:
        # A watch is answered from the durable state: it need not wait for pending changes.
        return not isinstance(message, WatchApproval) and super().waits_for_pending(message)

    def _notify_watchers(self) -> None:
        """Tell the watchers of every approval that is no longer pending (or does not exist),
        from the durable state."""
        for item_id in list(self.watchers):
            item = self.state.items.get(item_id) or self._archived(item_id)
            if item is not None and item.status == "pending":
                continue
            view = self._view(item) if item is not None else {"id": item_id, "status": "missing"}
            for ref in self.watchers.pop(item_id).values():
                tell_quietly(ref, ApprovalChanged(item_id, view))

    def _sweep(self) -> None:
        now = self.ctx.clock.time()
        expired = [
            _change(
                "approval.expired",
                i,
                status="expired",
                decided_at=now,
                reason="nobody decided in time",
            )
            for i in self.state.items.values()
            if i.status == "pending" and i.expires_at is not None and i.expires_at <= now
        ]
        if expired:
            self._persist_now(*expired)

    def _recover(self) -> None:
        """Calls that were running with a known process when the gateway went down: their end
        comes from the process monitor (the runner records it even while the gateway is down).
        A running call with no process yet is the session's to drive on: it asks the monitor
        under the call's id, which starts the process only if it provably never started, so
        nothing here guesses `unknown` (a guess made while that session is starting would
        close a call that then runs)."""
        for item in self.state.items.values():
            if item.status != "running" or item.proc_id is None:
                continue
            if not self.send("procs", WatchProcess(item.proc_id, self.actor_ref)):
                self.after(RECOVER_RETRY_S, _Recover())  # the monitor is not up yet
                return

    def _proc_ended(self, ended: ProcEnded) -> None:
        for item in list(self.state.items.values()):
            if item.proc_id != ended.proc_id or item.status != "running":
                continue
            at, detail = self.ctx.clock.time(), dict[str, Any]()
            if ended.state == "exited":
                result = {"exit_code": ended.exit_code, "signal": ended.signal, "recovered": True}
                status, detail["result"] = "executed", result
            else:
                reason = f"its process is {ended.state}: the outcome is unknown"
                status, detail["reason"] = "unknown", reason
            event = _change(f"approval.{status}", item, status=status, finished_at=at, **detail)
            self._persist_now(event, after=ended.durable)  # after the end it learned of

    def _begin_events(
        self, item: Approval, state: ApprovalsState, seen_version: int | None
    ) -> list[NewEvent]:
        """What begin does to approved `item`: `approval.running`, or, if the policy changed
        since the caller saw it (`seen_version`; None: the caller saw nothing older than now)
        or since the decision, the call evaluated again: denied, or pending for a person."""
        stale = seen_version is not None and seen_version != state.policy_version
        if stale or item.policy_version != state.policy_version:
            action, why = evaluate(self.policy, item.tool, item.arguments)
            if action == "deny":
                return [self._decided(item, False, "policy", f"the policy changed: {why}", state)]
            if action == "ask" and item.decided_by == "policy":
                now = self.ctx.clock.time()
                pending = {
                    **item.model_dump(mode="json"),
                    "status": "pending",
                    "decided_by": None,
                    "reason": f"the policy changed: {why}",
                    "policy_version": state.policy_version,
                    "expires_at": now + self.policy.expire_after_s,
                }
                return [NewEvent("approval.requested", pending)]
        return [
            _change("approval.running", item, status="running", started_at=self.ctx.clock.time())
        ]

    def _decided(
        self, item: Approval, approve: bool, by: str, reason: str, state: ApprovalsState
    ) -> NewEvent:
        return _change(
            "approval.decided",
            item,
            status="approved" if approve else "denied",
            decided_by=by,
            reason=reason,
            decided_at=self.ctx.clock.time(),
            policy_version=state.policy_version,
        )

    # -- persisting, and the bound on the state ----------------------------------------------

    def _begun(self, item: Approval, events: list[NewEvent]) -> dict[str, Any]:
        return self._pipelined(item.id, *events, begun=events[-1].type == "approval.running")

    def _pipelined(self, item_id: str, *events: NewEvent, begun: bool = False) -> dict[str, Any]:
        """persist_async `events` (with the archiving they make due); answers item's view,
        with `begun: true` if this command marked it running (the caller may start it)."""
        archived, keep = self._archival(self.latest, events)
        mark = {"begun": True} if begun else {}
        return self.persist_async(  # type: ignore[no-any-return]
            *events,
            *archived,
            result=lambda s: self._view(s.items[item_id], s) | mark,
            keep=keep,
        )

    def _persist_now(self, *events: NewEvent, after: Future[Any] | None = None) -> None:
        archived, keep = self._archival(self.state, events)
        self.persist(*events, *archived, keep=keep, after=after)

    def _archival(
        self, state: ApprovalsState, events: tuple[NewEvent, ...]
    ) -> tuple[list[NewEvent], dict[str, Any]]:
        """The `approval.archived` events of the oldest finished items that `events` push out
        of the newest `keep_finished`, and their records to keep in the same transaction. Only
        items finished before `events` go, so a command's own item is never among them."""
        finishing = sum(1 for e in events if e.data.get("status") in FINAL)
        excess = len(state.finished) + finishing - self.keep_finished
        archived: list[NewEvent] = []
        keep: dict[str, Any] = {}
        for old_id in state.finished[: max(0, excess)]:
            old = state.items[old_id]
            record = old.model_dump(mode="json")
            keep[f"id:{old_id}"] = record
            if state.by_call.get(_call_key(old.session, old.tool_call)) == old_id:
                keep[_kept_call(old.session, old.tool_call)] = record
            archived.append(_change("approval.archived", old))
        return archived, keep

    def _archived(self, item_id: str) -> Approval | None:
        record = self.ctx.journal.kept(self.name, f"id:{item_id}")
        return None if record is None else Approval.model_validate(record)

    def _by_call(self, state: ApprovalsState, session: str, tool_call: str) -> Approval | None:
        """The newest approval of this call: in `state`, else in the durable state (archived
        by a pending event), else archived."""
        key = _call_key(session, tool_call)
        for known in (state, self.state):
            if key in known.by_call:
                return known.items[known.by_call[key]]
        record = self.ctx.journal.kept(self.name, _kept_call(session, tool_call))
        return None if record is None else Approval.model_validate(record)

    def _item(self, item_id: str, state: ApprovalsState) -> Approval:
        item = state.items.get(item_id) or self.state.items.get(item_id) or self._archived(item_id)
        if item is None:
            raise NotFound(f"there is no approval {item_id!r}", details={"id": item_id})
        return item

    def _view(self, item: Approval, state: ApprovalsState | None = None) -> dict[str, Any]:
        version = (state or self.state).policy_version
        return {**item.model_dump(mode="json"), "current_policy_version": version}
