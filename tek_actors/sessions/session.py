"""ModelSessionActor: one live conversation.

Started on demand by the SessionManager (which forwards it the session's requests) and stopped
when idle (passivation: a snapshot, then stop; the next request starts it again from that
snapshot and the journal). Its events are journaled under the actor name `session-<id>`.

    sessions.send   the user message is journaled (with the request's idem record) before the
                    reply {message_id}; it joins the session's FIFO of turns (bounded:
                    `limits.session_queue`, then `overloaded`)
    a turn          the head of the FIFO: the conversation goes to the ProviderActor for the
                    session's model; text streams as `session.delta` (ephemeral); the answer is
                    journaled as `session.message` with the model that answered and the usage;
                    a provider error is journaled as an `error` entry, never dropped

A turn whose user message is in the journal but whose answer is not (the gateway died in
between) runs again when the session starts: nothing the user sent is left unanswered.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictStr

from tek_actors.config import Config
from tek_actors.errors import Conflict, InvalidValue, Overloaded, TekError
from tek_actors.providers import Complete, CompletionDelta, CompletionDone, Message, ModelRequest
from tek_actors.providers.tokens import estimate_tokens
from tek_actors.runtime import ActorContext, PersistentActor, Ticket, command
from tek_actors.sessions.messages import Passivate, Passivated
from tek_actors.store import NewEvent
from tek_actors.wire import WireModel

__all__ = ["OPEN_MARK", "Entry", "ModelSessionActor", "SessionState", "open_mark"]

# Set in the journal with a user message, cleared with the answer that empties the queue: the
# manager starts these sessions after a restart, so every message sent gets its answer.
OPEN_MARK = "session-open:"


def open_mark(session_id: str) -> str:
    return OPEN_MARK + session_id


Id = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class Entry(BaseModel):
    """One line of the conversation."""

    id: str
    role: Literal["user", "assistant", "tool", "error"]
    text: str = ""
    at: float
    turn: str | None = None  # for an answer: the user message it answers
    tool_calls: list[dict[str, Any]] = []
    tool_call_id: str | None = None
    model: str | None = None
    provider: str | None = None
    usage: dict[str, int] | None = None
    fallback_from: list[str] = []
    incomplete: bool = False
    local: bool = False
    error: dict[str, Any] | None = None


class Checkpoint(BaseModel):
    """What a switch changed, so that undo_switch can put it back."""

    model: str | None
    dropped: list[str]


class SessionState(BaseModel):
    id: str = ""
    model: str | None = None
    entries: list[Entry] = []
    queue: list[str] = []  # user messages waiting for (or in) their turn, oldest first
    dropped: list[str] = []  # user messages (with their answers) left out of the context
    checkpoints: list[Checkpoint] = []  # one per switch, newest last


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


class ModelSessionActor(PersistentActor[SessionState]):
    """Options: `session_id`, `model` (its alias at creation), `config` (the Config in force),
    `manager` (the SessionManager's ref, told when this actor passivates)."""

    domain = "sessions"
    state_model = SessionState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.session_id = str(ctx.options["session_id"])
        self.config: Config = ctx.options.get("config") or Config()
        self.manager = ctx.options.get("manager")
        self.turn: str | None = None  # the user message whose answer is on its way
        self.waiting: list[tuple[Ticket, Any]] = []  # switches waiting for the turns to end
        self.open_mark = open_mark(self.session_id)

    def initial_state(self) -> SessionState:
        options = self.ctx.options
        return SessionState(id=str(options["session_id"]), model=options.get("model"))

    def apply(self, state: SessionState, event: NewEvent) -> SessionState:
        data = event.data
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
        if event.type in ("session.message", "session.error"):
            entry = Entry.model_validate({k: v for k, v in data.items() if k != "session"})
            queue = [m for m in state.queue if m != entry.turn]
            return state.model_copy(update={"entries": [*state.entries, entry], "queue": queue})
        return state

    def public_state(self) -> dict[str, Any]:
        return self.state.model_dump(mode="json")

    # -- start and stop ----------------------------------------------------------------------

    def on_begin(self) -> None:
        super().on_begin()
        self._next_turn()  # a turn cut short by a crash runs again

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
            "entries": [e.model_dump(mode="json") for e in state.entries],
            "count": len(state.entries),
            "queue": list(state.queue),
            "turn": self.turn,
            "dropped": list(state.dropped),
            "switches": len(state.checkpoints),
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

    def _settle_waiting(self) -> None:
        """Switches wait until no turn runs: a model never changes under a turn."""
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

    def _next_turn(self) -> None:
        if self.turn is not None or not self.state.queue:
            self._settle_waiting()
            return
        self.turn = self.state.queue[0]
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
        request = ModelRequest(messages=self._context())
        self.send("providers", Complete(self.turn, self.state.model, request, self.actor_ref))

    def _overflow(self, plan: dict[str, Any]) -> None:
        """The context does not fit: never trimmed silently; the person chooses."""
        message = (
            f"the conversation ({plan['tokens']} tokens) does not fit {plan['model']}'s window "
            f"of {plan['target_window']}: switch with mode carry_over (drops "
            f"{len(plan['options'][0]['drop'])} oldest messages) or fresh, or set "
            "limits.auto_trim"
        )
        error = {
            "code": "invalid_value",
            "message": message,
            "details": {"kind": "context_overflow", **plan},
        }
        turn = self.turn
        assert turn is not None
        self._finish_turn(
            NewEvent(
                "session.error",
                {
                    "session": self.session_id,
                    "id": "m-" + uuid.uuid4().hex[:12],
                    "turn": turn,
                    "at": time.time(),
                    "role": "error",
                    "text": message,
                    "error": error,
                },
            )
        )

    def _pairs(self) -> list[tuple[str, list[Message]]]:
        """The context as (user message id, [that message, its answers]) in conversation order
        (a message sent during a turn is logged before that turn's answer, but the model sees
        each answer right after the message it answers). Dropped messages and error entries
        are left out."""
        answers: dict[str, list[Entry]] = {}
        for entry in self.state.entries:
            if entry.role == "assistant" and entry.turn is not None:
                answers.setdefault(entry.turn, []).append(entry)
        dropped = set(self.state.dropped)
        pairs = []
        for entry in self.state.entries:
            if entry.role != "user" or entry.id in dropped:
                continue
            messages = [Message(role="user", content=entry.text)]
            for answer in answers.get(entry.id, []):
                if answer.text:
                    messages.append(Message(role="assistant", content=answer.text))
            pairs.append((entry.id, messages))
        return pairs

    def _context(self) -> list[Message]:
        """What this turn sends: every pair up to and including the turn's user message."""
        out: list[Message] = []
        for user_id, messages in self._pairs():
            if user_id == self.turn:
                out.append(messages[0])
                break
            out += messages
        return out

    @staticmethod
    def _tokens(messages: list[Message]) -> int:
        return sum(estimate_tokens(m.content) + 4 for m in messages)

    def _plan(self, target: str | None) -> dict[str, Any]:
        """What switching to `target` (None: the session's own model) would mean."""
        alias = target or self.state.model or self.config.default_model
        models = self.config.models
        if alias not in models:
            raise InvalidValue(
                f"there is no model alias {alias!r}",
                details={"path": "model", "expected": f"one of {sorted(models)}"},
            )
        window = models[alias].context_window
        pairs = [(uid, self._tokens(messages)) for uid, messages in self._pairs()]
        tokens = sum(t for _, t in pairs)
        drop, left = [], tokens
        for uid, cost in pairs[:-1]:  # the newest message always stays
            if left <= window:
                break
            drop.append(uid)
            left -= cost
        return {
            "model": alias,
            "tokens": tokens,
            "target_window": window,
            "fits": tokens <= window,
            "options": [
                {"mode": "carry_over", "drop": drop, "tokens_after": left, "fits": left <= window},
                {
                    "mode": "fresh",
                    "drop": [uid for uid, _ in pairs],
                    "tokens_after": 0,
                    "fits": True,
                },
            ],
        }

    def on_message(self, message: Any) -> Any:
        if isinstance(message, CompletionDelta):
            if message.call_id == self.turn:
                self.publish(
                    "session.delta",
                    {"session": self.session_id, "turn": message.call_id, "text": message.text},
                )
            return None
        if isinstance(message, CompletionDone):
            if message.call_id == self.turn:
                self._answered(message)
            return None
        if isinstance(message, Config):
            self.config = message
            return None
        if isinstance(message, Passivate):
            if self.turn is None and not self.state.queue and self.manager is not None:
                # The manager stops this actor: it forwards requests in order, so one sent
                # before it learnt of this is handled first, never dropped with the inbox.
                self.snapshot(wait=True)
                self.manager.tell(Passivated(self.session_id, self.ctx.incarnation))
            return None
        return super().on_message(message)

    def _answered(self, done: CompletionDone) -> None:
        turn = self.turn
        assert turn is not None
        base: dict[str, Any] = {"session": self.session_id, "turn": turn, "at": time.time()}
        base["id"] = "m-" + uuid.uuid4().hex[:12]
        if done.completion is not None:
            c = done.completion
            event = NewEvent(
                "session.message",
                {
                    **base,
                    "role": "assistant",
                    "text": c.text,
                    "tool_calls": [t.model_dump(mode="json") for t in c.tool_calls],
                    "model": c.model,
                    "provider": c.provider,
                    "usage": c.usage.model_dump(),
                    "fallback_from": c.fallback_from,
                    "incomplete": c.incomplete,
                    "local": c.local,
                    "error": {"message": c.error} if c.error else None,
                },
            )
        else:
            error = done.error
            described = {"code": getattr(error, "code", "internal"), "message": str(error)}
            if error is not None:
                described = {"code": error.code, "message": error.message}
                described |= {"details": error.details} if error.details else {}
            data = {**base, "role": "error", "text": described["message"], "error": described}
            event = NewEvent("session.error", data)
        self._finish_turn(event)

    def _finish_turn(self, event: NewEvent) -> None:
        turn = self.turn
        self.turn = None
        empties = self.state.queue == [turn]  # this answer empties the queue
        self.persist(event, marks={self.open_mark: False} if empties else None)
        self._next_turn()
