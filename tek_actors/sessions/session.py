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
from tek_actors.errors import Overloaded
from tek_actors.providers import Complete, CompletionDelta, CompletionDone, Message, ModelRequest
from tek_actors.runtime import ActorContext, PersistentActor, command
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


class SessionState(BaseModel):
    id: str = ""
    model: str | None = None
    entries: list[Entry] = []
    queue: list[str] = []  # user messages waiting for (or in) their turn, oldest first


class SendPayload(WireModel):
    id: Id
    text: Annotated[StrictStr, Field(min_length=1, max_length=1 << 20)]


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
        return {
            "id": self.session_id,
            "model": self.state.model or self.config.default_model,
            "entries": [e.model_dump(mode="json") for e in self.state.entries[payload.since :]],
            "count": len(self.state.entries),
            "queue": list(self.state.queue),
            "turn": self.turn,
        }

    # -- turns -------------------------------------------------------------------------------

    def _next_turn(self) -> None:
        if self.turn is not None or not self.state.queue:
            return
        self.turn = self.state.queue[0]
        request = ModelRequest(messages=self._context())
        self.send("providers", Complete(self.turn, self.state.model, request, self.actor_ref))

    def _context(self) -> list[Message]:
        """The conversation up to this turn's user message, each answer right after the
        message it answers (a message sent during a turn is logged before that turn's answer,
        but the model must see them in conversation order). Error entries are left out."""
        answers: dict[str, list[Entry]] = {}
        for entry in self.state.entries:
            if entry.role == "assistant" and entry.turn is not None:
                answers.setdefault(entry.turn, []).append(entry)
        out = []
        for entry in self.state.entries:
            if entry.role != "user":
                continue
            out.append(Message(role="user", content=entry.text))
            if entry.id == self.turn:
                break
            for answer in answers.get(entry.id, []):
                if answer.text:
                    out.append(Message(role="assistant", content=answer.text))
        return out

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
        self.turn = None
        empties = self.state.queue == [turn]  # this answer empties the queue
        self.persist(event, marks={self.open_mark: False} if empties else None)
        self._next_turn()
