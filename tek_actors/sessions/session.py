"""ModelSessionActor: one live conversation.

Started on demand by the SessionManager (which forwards it the session's requests) and stopped
when idle (passivation: a snapshot, then stop; the next request starts it again from that
snapshot and the journal). Its events are journaled under the actor name `session-<id>`.

    sessions.send   the user message is journaled (with the request's idem record) before the
                    reply {message_id}; it joins the session's FIFO of turns (bounded:
                    `limits.session_queue`, then `overloaded`)
    a turn          the head of the FIFO: the conversation goes to the ProviderActor for the
                    session's model, with the tools it may call; text streams as
                    `session.delta` (ephemeral); the answer is journaled as `session.message`
                    with the model that answered and the usage; a provider error is journaled
                    as an `error` entry, never dropped
    a tool round    an answer with tool calls: each call is approved and run (toolcalls.py);
                    each result is journaled as `session.tool_result` as it finishes, and
                    appears in the conversation in the order the model issued the calls; then
                    the model is asked again, at most `limits.tool_rounds` rounds per turn

Everything a turn has done is in the journal, so a turn cut short by a crash carries on from
there when the session starts: a user message without an answer is answered, a round is resumed
from the approvals' own record (a call that was running is never run again).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr

from tek_actors.approvals.messages import ApprovalChanged
from tek_actors.config import Config
from tek_actors.errors import Conflict, InvalidValue, Overloaded, TekError
from tek_actors.mcp.catalog import Catalog
from tek_actors.procs.messages import ProcEnded
from tek_actors.providers import (
    CallKnown,
    CallQuery,
    Complete,
    CompletionDelta,
    CompletionDone,
    ModelRequest,
    ToolCall,
)
from tek_actors.providers.tokens import estimate_tokens
from tek_actors.runtime import ActorContext, PersistentActor, Ticket, command
from tek_actors.runtime.effects import apply_effect
from tek_actors.sessions import context
from tek_actors.sessions._state import Checkpoint, Entry, Round, SessionState, apply_tool_result
from tek_actors.sessions.messages import CallDue, Passivate, Passivated
from tek_actors.sessions.toolcalls import WATCH_S, CallRun, Later, ToolRound
from tek_actors.sessions.tools import tool_specs
from tek_actors.sessions.writes import settle_unfinished_writes
from tek_actors.store import NewEvent
from tek_actors.wire import WireModel

__all__ = ["OPEN_MARK", "Entry", "ModelSessionActor", "SessionState", "open_mark"]

# Set in the journal with a user message, cleared with the answer that empties the queue: the
# manager starts these sessions after a restart, so every message sent gets its answer.
OPEN_MARK = "session-open:"


def open_mark(session_id: str) -> str:
    return OPEN_MARK + session_id


Id = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class SendPayload(WireModel):
    id: Id
    text: Annotated[StrictStr, Field(min_length=1, max_length=1 << 20)]


class PlanPayload(WireModel):
    id: Id
    model: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class SwitchPayload(WireModel):
    id: Id
    model: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    mode: Literal["carry_over", "fresh"]


class GetPayload(WireModel):
    id: Id
    since: Annotated[int, Field(ge=0)] = 0  # entries after this many


def _queue_full(error: TekError | None) -> bool:
    """The provider's waiting queue was full (providers/calls.py queue_full): busy, not down."""
    return isinstance(error, Overloaded) and "capacity" in (error.details or {})


class ModelSessionActor(PersistentActor[SessionState]):
    """Options: `session_id`, `model` (its alias at creation), `config` (the Config in force),
    `manager` (the SessionManager's ref, told when it passivates), `workdir` (the folder its
    tools work in), `estimator` (text -> tokens; bytes / 4), `mcp_catalog` (MCP tools)."""

    domain = "sessions"
    state_model = SessionState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.session_id = str(ctx.options["session_id"])
        self.config: Config = ctx.options.get("config") or Config()
        self.catalog: Catalog = ctx.options.get("mcp_catalog") or Catalog()
        self.manager = ctx.options.get("manager")
        self.workdir = Path(ctx.options.get("workdir") or Path.cwd())
        self.estimate: context.Estimator = ctx.options.get("estimator") or estimate_tokens
        self.turn: str | None = None  # the user message whose answer is on its way
        self.call: Complete | None = None  # the model call on its way
        self.call_estimate = 0  # that call's context, by the raw estimate
        self.tools: ToolRound | None = None  # the tool calls on their way
        self.waiting: list[tuple[Ticket, Any]] = []  # switches waiting for the turns to end
        self.open_mark = open_mark(self.session_id)
        self.passivation = ""  # "asked" by the manager (it goes once idle), then "told" it so

    def initial_state(self) -> SessionState:
        options = self.ctx.options
        return SessionState(id=str(options["session_id"]), model=options.get("model"))

    def apply(self, state: SessionState, event: NewEvent) -> SessionState:
        data = event.data
        if event.type.startswith("effect."):
            return state.model_copy(update={"intents": apply_effect(state.intents, event)})
        if event.type == "session.user_message":
            entry = Entry(id=data["message_id"], role="user", text=data["text"], at=data["at"])
            return state.model_copy(
                update={
                    "entries": [*state.entries, entry],
                    "queue": [*state.queue, entry.id],
                }
            )
        if event.type in ("session.switched", "session.trimmed"):
            checkpoints = state.checkpoints
            if event.type == "session.switched":
                saved = Checkpoint(model=state.model, dropped=state.dropped)
                checkpoints = [*checkpoints, saved]
            return state.model_copy(
                update={
                    "model": data.get("to", state.model),
                    "dropped": [*state.dropped, *data["dropped"]],
                    "checkpoints": checkpoints,
                }
            )
        if event.type == "session.switch_undone":
            last = state.checkpoints[-1]
            return state.model_copy(
                update={
                    "model": last.model,
                    "dropped": last.dropped,
                    "checkpoints": state.checkpoints[:-1],
                }
            )
        if event.type == "session.tool_result":
            return apply_tool_result(state, data)
        if event.type in ("session.message", "session.error"):
            entry = Entry.model_validate({k: v for k, v in data.items() if k in Entry.model_fields})
            update: dict[str, Any] = {"entries": [*state.entries, entry], "round": None}
            if entry.tool_calls:  # the turn goes on with a round of tool calls
                update["round"] = Round(
                    entry=entry.id, turn=entry.turn or "", size=len(entry.tool_calls)
                )
            else:
                update["queue"] = [m for m in state.queue if m != entry.turn]
            estimate, usage = data.get("estimate"), entry.usage or {}
            if estimate and usage.get("input_tokens") and entry.model and not entry.local:
                observed = usage["input_tokens"] / estimate
                update["calibration"] = context.calibrated(state.calibration, entry.model, observed)
            return state.model_copy(update=update)
        return state

    def public_state(self) -> dict[str, Any]:
        return self.state.model_dump(mode="json")

    # -- start and stop ----------------------------------------------------------------------

    def on_begin(self) -> None:
        super().on_begin()
        settle_unfinished_writes(self)  # before anything: a write cut short by a crash
        self._next_turn(recovering=True)  # a turn cut short by a crash carries on

    # -- requests ----------------------------------------------------------------------------

    @command("sessions.send", SendPayload)
    def send_(self, payload: SendPayload) -> dict[str, Any]:
        bound = self.config.limits.session_queue
        if len(self.state.queue) >= bound:
            raise Overloaded(
                f"session {self.session_id} has {len(self.state.queue)} messages waiting "
                f"(limits.session_queue is {bound})",
                retry_after_ms=2000,
                # the person decides whether to wait: the client does not resend on its own
                details={"queued": len(self.state.queue), "limit": bound, "retryable": False},
            )
        message_id = "m-" + uuid.uuid4().hex[:12]
        event = NewEvent(
            "session.user_message",
            {
                "session": self.session_id,
                "message_id": message_id,
                "text": payload.text,
                "at": time.time(),
            },
        )
        reply = self.persist(
            event, result=lambda s: {"message_id": message_id}, marks={self.open_mark: True}
        )
        self._next_turn()
        return reply  # type: ignore[no-any-return]

    @command("sessions.get", GetPayload)
    def get(self, payload: GetPayload) -> dict[str, Any]:
        view = self._view(self.state)
        view["entries"] = view["entries"][payload.since :]
        return view

    def _view(self, state: SessionState) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "model": state.model or self.config.default_model,
            "workdir": str(self.workdir),
            "entries": [e.model_dump(mode="json") for e in state.entries],
            "count": len(state.entries),
            "queue": list(state.queue),
            "turn": self.turn,
            "dropped": list(state.dropped),
            "switches": len(state.checkpoints),
            "calibration": dict(state.calibration),
        }

    @command("sessions.plan_switch", PlanPayload)
    def plan_switch(self, payload: PlanPayload) -> dict[str, Any]:
        return self._plan(payload.model)

    @command("sessions.switch", SwitchPayload)
    def switch(self, payload: SwitchPayload) -> None:
        self.waiting.append((self.defer(), payload))
        self._settle_waiting()

    @command("sessions.undo_switch", GetPayload)
    def undo_switch(self, payload: GetPayload) -> None:
        self.waiting.append((self.defer(), None))
        self._settle_waiting()

    def _plan(self, target: str | None) -> dict[str, Any]:
        tools = tool_specs(self.config, self.catalog)
        return context.plan(self.state, self.config, target, self.estimate, tools)

    def _settle_waiting(self) -> None:
        """Switches wait until no turn runs (tool calls included): a model never changes
        under a turn."""
        while self.waiting and self.turn is None and not self.state.queue:
            ticket, payload = self.waiting.pop(0)
            try:
                if payload is None:
                    self._undo(ticket)
                else:
                    self._switch(ticket, payload)
            except TekError as err:
                self.answer(ticket, error=err)

    def _switch(self, ticket: Ticket, payload: SwitchPayload) -> None:
        plan = self._plan(payload.model)
        option = next(o for o in plan["options"] if o["mode"] == payload.mode)
        if not option["fits"]:
            raise InvalidValue(
                f"even with only the newest message, the conversation does not fit "
                f"{payload.model}'s window of {plan['target_window']} tokens: use mode fresh",
                details={"path": "mode", "expected": "fresh", "plan": plan},
            )
        event = NewEvent(
            "session.switched",
            {
                "session": self.session_id,
                "from": self.state.model or self.config.default_model,
                "to": payload.model,
                "mode": payload.mode,
                "dropped": option["drop"],
                "tokens_after": option["tokens_after"],
            },
        )
        self.answer(ticket, self.persist(event, result=lambda s: self._view(s), ticket=ticket))

    def _undo(self, ticket: Ticket) -> None:
        if not self.state.checkpoints:
            raise Conflict(
                f"session {self.session_id} has no switch to undo", details={"id": self.session_id}
            )
        event = NewEvent("session.switch_undone", {"session": self.session_id})
        self.answer(ticket, self.persist(event, result=lambda s: self._view(s), ticket=ticket))

    # -- turns -------------------------------------------------------------------------------

    def _next_turn(self, *, recovering: bool = False) -> None:
        # Once told, a message that still came is the next incarnation's (its open mark says so)
        if self.turn is not None or not self.state.queue or self.passivation == "told":
            self._settle_waiting()
            idle = self.turn is None and not self.state.queue
            if idle and self.passivation == "asked" and self.manager is not None:
                self.passivation = "told"  # the manager stops it; on_end snapshots what changed
                self.manager.tell(Passivated(self.session_id, self.ctx.incarnation))
            return
        self.turn = self.state.queue[0]
        current = self.state.round
        if current is not None and current.turn == self.turn and current.appended < current.size:
            self._run_round(recovering=recovering)  # a restart found the round unfinished
            return
        self._ask_model()

    def _ask_model(self) -> None:
        """Send the conversation to the session's model (unless it does not fit)."""
        plan = self._plan(None)
        if not plan["fits"]:
            carry = plan["options"][0]
            if not (self.config.limits.auto_trim and carry["fits"]):
                self._overflow(plan)
                return
            trimmed = {"session": self.session_id, "dropped": carry["drop"], "reason": "auto_trim"}
            self.persist(
                NewEvent("session.trimmed", trimmed | {"tokens_after": carry["tokens_after"]})
            )
        assert self.turn is not None
        messages = context.context(self.state, self.turn)
        tools = tool_specs(self.config, self.catalog)
        raw, calls = context.raw_tokens, context.tools_tokens
        self.call_estimate = raw(messages, self.estimate) + calls(tools, self.estimate)
        call_id = f"{self.turn}/{uuid.uuid4().hex[:8]}"
        request = ModelRequest(messages=messages, tools=tools)
        self.call = Complete(
            call_id, self.state.model, request, self.actor_ref, session=self.session_id
        )
        self._send_call(self.call)

    def _send_call(self, call: Complete) -> None:
        """Hand the call to the provider actor, and check on it now and then: a restart of
        that actor loses the calls it had, and a lost call is sent again."""
        if call is not self.call:
            return  # answered meanwhile
        if not self.send("providers", call):
            self.after(WATCH_S / 10, CallDue(call.call_id, resend=True))
            return
        self.after(WATCH_S, CallDue(call.call_id, resend=False))

    def _check_call(self, call: Complete) -> None:
        query = CallQuery(call.call_id, self.actor_ref)
        if call is self.call and not self.send("providers", query):
            self.after(WATCH_S, CallDue(call.call_id, resend=False))

    def _call_known(self, known: CallKnown) -> None:
        call = self.call
        if call is None or known.call_id != call.call_id:
            return
        if known.known:
            self.after(WATCH_S, CallDue(call.call_id, resend=False))
        else:  # its answer would have come before this one: the provider actor lost it
            self.log.warning("the provider actor lost call {}: sending it again", call.call_id)
            self._send_call(call)

    def _overflow(self, plan: dict[str, Any]) -> None:
        """The context does not fit: never trimmed silently; the person chooses."""
        message = (
            f"the conversation ({plan['tokens']} tokens) does not fit {plan['model']}'s window "
            f"of {plan['target_window']}: switch with mode carry_over (drops "
            f"{len(plan['options'][0]['drop'])} oldest messages) or fresh, or set "
            "limits.auto_trim"
        )
        details = {"kind": "context_overflow", **plan}
        self._fail_turn({"code": "invalid_value", "message": message, "details": details})

    def _fail_turn(self, error: dict[str, Any]) -> None:
        """End the turn with a visible error entry."""
        data = {
            "session": self.session_id,
            "id": "m-" + uuid.uuid4().hex[:12],
            "turn": self.turn,
            "at": time.time(),
            "role": "error",
            "text": error["message"],
            "error": error,
        }
        self._finish_turn(NewEvent("session.error", data))

    def _answered(self, done: CompletionDone) -> None:
        self.call = None
        base: dict[str, Any] = {"session": self.session_id, "turn": self.turn, "at": time.time()}
        base["id"] = "m-" + uuid.uuid4().hex[:12]
        if done.completion is None:
            error = done.error
            if _queue_full(error):  # the provider is busy, not failing: the turn waits
                assert error is not None
                delay = (error.retry_after_ms or 1000) / 1000 * random.uniform(1.0, 1.25)
                self.publish(
                    "session.waiting",
                    {
                        "session": self.session_id,
                        "turn": self.turn,
                        "retry_in_s": delay,
                        "reason": error.message,
                    },
                )
                self.after(delay, Later(self._ask_model))
                return
            described: dict[str, Any] = {"code": "internal", "message": str(error)}
            if error is not None:
                described = {"code": error.code, "message": error.message}
                described |= {"details": error.details} if error.details else {}
            data = {**base, "role": "error", "text": described["message"], "error": described}
            self._finish_turn(NewEvent("session.error", data))
            return
        c = done.completion
        # A stream cut short may have cut a call's arguments: only whole answers run tools.
        calls = [] if c.incomplete else [t.model_dump(mode="json") for t in c.tool_calls]
        data = {
            **base,
            "role": "assistant",
            "text": c.text,
            "tool_calls": calls,
            "model": c.model,
            "provider": c.provider,
            "usage": c.usage.model_dump(),
            "estimate": self.call_estimate,
            "fallback_from": c.fallback_from,
            "incomplete": c.incomplete,
            "local": c.local,
            "error": {"message": c.error} if c.error else None,
        }
        if not calls:
            self._finish_turn(NewEvent("session.message", data))
            return
        self.persist(NewEvent("session.message", data))
        self._run_round(recovering=False)

    # -- tool rounds -------------------------------------------------------------------------

    def _run_round(self, *, recovering: bool) -> None:
        current = self.state.round
        assert current is not None
        entry = next(e for e in reversed(self.state.entries) if e.id == current.entry)
        calls = [ToolCall(**c) for c in entry.tool_calls]
        done = set(range(current.appended)) | set(current.waiting)
        self.tools = ToolRound(self, current.entry, calls, done)
        self.tools.start(recovering=recovering)

    def tool_finished(self, run: CallRun, status: str, result: dict[str, Any]) -> None:
        """A call's result (from toolcalls.py): journal it; after the round's last, go on."""
        data = {
            "session": self.session_id,
            "id": "m-" + uuid.uuid4().hex[:12],
            "role": "tool",
            "turn": self.turn,
            "entry": run.round.entry_id,
            "index": run.index,
            "tool_call_id": run.call.id,
            "name": run.call.name,
            "status": status,
            "approval": run.approval_id,
            "text": json.dumps(result, ensure_ascii=False),
            "at": time.time(),
        }
        self.persist(NewEvent("session.tool_result", data), after=run.end_append)
        current = self.state.round
        if current is None or current.appended < current.size:
            return
        self.tools = None
        rounds = sum(1 for e in self.state.entries if e.turn == self.turn and e.tool_calls)
        limit = self.config.limits.tool_rounds
        if rounds >= limit:
            message = (
                f"stopped after {rounds} rounds of tool calls (limits.tool_rounds is {limit}): "
                "send a message to let the model go on"
            )
            self._fail_turn(
                {
                    "code": "overloaded",
                    "message": message,
                    "details": {"kind": "tool_rounds", "rounds": rounds, "limit": limit},
                }
            )
            return
        self._ask_model()

    def _finish_turn(self, event: NewEvent) -> None:
        turn = self.turn
        self.turn = None
        self.call = None
        empties = self.state.queue == [turn]  # this answer empties the queue
        self.persist(event, marks={self.open_mark: False} if empties else None)
        self._next_turn()

    # -- internal messages -------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        call_id = self.call.call_id if self.call is not None else None
        if isinstance(message, CompletionDelta):
            if message.call_id == call_id:
                self.publish(
                    "session.delta",
                    {"session": self.session_id, "turn": self.turn, "text": message.text},
                )
            return None
        if isinstance(message, CompletionDone):
            if message.call_id == call_id:
                self._answered(message)
            return None
        if isinstance(message, CallKnown):
            self._call_known(message)
            return None
        if isinstance(message, CallDue):
            if call_id == message.call_id and self.call is not None:
                (self._send_call if message.resend else self._check_call)(self.call)
            return None
        if isinstance(message, Later):
            message.step()
            return None
        if isinstance(message, ApprovalChanged):
            if self.tools is not None:
                self.tools.approval_changed(message.approval_id, message.view)
            return None
        if isinstance(message, ProcEnded):
            if self.tools is not None:
                self.tools.proc_ended(message)
            return None
        if isinstance(message, Config):
            self.config = message
            return None
        if isinstance(message, Passivate):
            self.passivation = self.passivation or "asked"
            self._next_turn()  # it goes now if idle, else at the end of its turns
            return None
        return super().on_message(message)
