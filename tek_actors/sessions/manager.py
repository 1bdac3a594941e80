"""SessionManager: the sessions' directory, and the owner of their live actors.

It journals what a session is (`session.created`, `session.renamed`, `session.deleted`) and
forwards every request about one session's conversation (`sessions.send`, `sessions.get`) to
that session's ModelSessionActor, starting it on demand. Live session actors are bounded: one
idle longer than `limits.session_idle_s` is passivated (it snapshots and stops), and past
`limits.sessions_live` the least recently used idle one is. Ten thousand stored sessions cost
ten thousand rows of state here and no threads.

A session actor that crashes is started again (it rehydrates) by the next request for it, or,
if it has unanswered messages, after a backoff (0.5 s, doubling to 60 s while it keeps crashing):
a turn a bug cut short carries on without anyone asking. The journal fences off its older
incarnation first, as the supervisor does for its children.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pykka
from pydantic import BaseModel, Field, StrictStr, ValidationError

from tek_actors.config import Config, ConfigDependent
from tek_actors.errors import InvalidValue, NotFound, TekError
from tek_actors.runtime import ActorContext, Fault, PersistentActor, Ticket, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.sessions.messages import Passivate, Passivated, SessionExited
from tek_actors.sessions.session import OPEN_MARK, ModelSessionActor, open_mark
from tek_actors.store import NewEvent
from tek_actors.wire import EmptyPayload, WireModel, invalid_request_from

__all__ = ["SessionManager", "SessionsState"]

FORWARDED = frozenset(
    {
        "sessions.send",
        "sessions.get",
        "sessions.plan_switch",
        "sessions.switch",
        "sessions.undo_switch",
    }
)
Id = Annotated[StrictStr, Field(min_length=1, max_length=64)]
FIRST_RESUME_S = 0.5
MAX_RESUME_S = 60.0
Title = Annotated[StrictStr, Field(max_length=200)]


class SessionMeta(BaseModel):
    id: str
    title: str = ""
    model: str | None = None  # None: the default model at each turn
    cwd: str | None = None  # the folder its tools work in (None: the gateway's workspace)
    created_at: float


class SessionsState(BaseModel):
    sessions: dict[str, SessionMeta] = {}


class CreatePayload(WireModel):
    model: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    title: Title | None = None
    cwd: Annotated[StrictStr, Field(min_length=1, max_length=4096)] | None = None


class IdPayload(WireModel):
    id: Id


class RenamePayload(WireModel):
    id: Id
    title: Title


class _Tick:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Resume:
    session_id: str


@dataclass(frozen=True, slots=True)
class CrashSession:
    """Test hook (`test.crash` with actor `session-<id>`): crash that session's live actor."""

    session_id: str


@dataclass
class _Live:
    ref: pykka.ActorRef[Any]
    incarnation: int
    used: float


class SessionManager(ConfigDependent, PersistentActor[SessionsState]):
    domain = "sessions"
    state_model = SessionsState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.config = Config()
        self.live: OrderedDict[str, _Live] = OrderedDict()  # least recently used first
        self.incarnations: dict[str, int] = {}
        self.crashes: dict[str, int] = {}  # crashes in a row, per session (for the backoff)

    def apply(self, state: SessionsState, event: NewEvent) -> SessionsState:
        data = event.data
        sessions = dict(state.sessions)
        if event.type == "session.created":
            sessions[data["id"]] = SessionMeta.model_validate(data)
        elif event.type == "session.renamed" and data["id"] in sessions:
            sessions[data["id"]] = sessions[data["id"]].model_copy(update={"title": data["title"]})
        elif event.type == "session.deleted":
            sessions.pop(data["id"], None)
        return SessionsState(sessions=sessions)

    def public_state(self) -> dict[str, Any]:
        return {"sessions": [m.model_dump(mode="json") for m in self.state.sessions.values()]}

    def configure(self, config: Config) -> None:
        self.config = config
        for entry in list(self.live.values()):
            # The session uses it before this acknowledges (it never asks us back). One that
            # stopped meanwhile gets the configuration when it starts again.
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                entry.ref.ask(config, timeout=5.0)

    def on_begin(self) -> None:
        super().on_begin()
        for mark in self.ctx.journal.marks(OPEN_MARK):  # unanswered messages: answer them
            session_id = mark.removeprefix(OPEN_MARK)
            if session_id in self.state.sessions:
                self.log.info("session {} has unanswered messages: resuming it", session_id)
                self._live_ref(session_id)
        self.after(self._tick_s(), _Tick())

    def on_release(self) -> None:
        for entry in self.live.values():
            try:
                entry.ref.stop(block=True, timeout=10)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        self.live.clear()

    def _tick_s(self) -> float:
        return max(0.05, min(60.0, self.config.limits.session_idle_s / 4))

    # -- the directory -----------------------------------------------------------------------

    @command("sessions.create", CreatePayload)
    def create(self, payload: CreatePayload) -> dict[str, Any]:
        if payload.model is not None and payload.model not in self.config.models:
            raise InvalidValue(
                f"there is no model alias {payload.model!r}",
                details={"path": "model", "expected": f"one of {sorted(self.config.models)}"},
            )
        if payload.cwd is not None and not (
            os.path.isabs(payload.cwd) and os.path.isdir(payload.cwd)
        ):
            raise InvalidValue(
                f"cwd {payload.cwd!r} is not an absolute path to a folder",
                details={"path": "cwd", "expected": "an absolute path to an existing folder"},
            )
        session_id = "s-" + uuid.uuid4().hex[:12]
        data = {
            "id": session_id,
            "title": payload.title or "",
            "model": payload.model,
            "cwd": payload.cwd,
            "created_at": time.time(),
        }
        return self.persist(  # type: ignore[no-any-return]
            NewEvent("session.created", data),
            result=lambda s: s.sessions[session_id].model_dump(mode="json"),
        )

    @command("sessions.list", EmptyPayload)
    def list_(self, payload: EmptyPayload) -> dict[str, Any]:
        items = sorted(self.state.sessions.values(), key=lambda m: m.created_at)
        return {
            "items": [m.model_dump(mode="json") | {"live": m.id in self.live} for m in items],
            "live": len(self.live),
        }

    @command("sessions.rename", RenamePayload)
    def rename(self, payload: RenamePayload) -> dict[str, Any]:
        self._meta(payload.id)
        event = NewEvent("session.renamed", {"id": payload.id, "title": payload.title})
        return self.persist(event, result=lambda s: s.sessions[payload.id].model_dump(mode="json"))  # type: ignore[no-any-return]

    @command("sessions.delete", IdPayload)
    def delete(self, payload: IdPayload) -> dict[str, Any]:
        self._meta(payload.id)
        entry = self.live.pop(payload.id, None)
        if entry is not None:
            try:
                entry.ref.stop(block=True, timeout=10)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        event = NewEvent("session.deleted", {"id": payload.id})
        return self.persist(  # type: ignore[no-any-return]
            event,
            result=lambda s: {"id": payload.id, "deleted": True},
            marks={open_mark(payload.id): False},
        )

    def _meta(self, session_id: str) -> SessionMeta:
        meta = self.state.sessions.get(session_id)
        if meta is None:
            raise NotFound(f"there is no session {session_id!r}", details={"id": session_id})
        return meta

    # -- forwarding to the live actors -------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ticket) and message.type in FORWARDED and not self._crashed:
            self._forward(message)
            return None
        return super().on_receive(message)

    def _forward(self, ticket: Ticket) -> None:
        """Hand the request to its session's actor, unclaimed: that actor claims and answers it,
        so a request the frontend gave up on still never runs."""
        try:
            session_id = IdPayload.model_validate({"id": ticket.payload.get("id")}).id
            self._meta(session_id)
            ref = self._live_ref(session_id)
        except ValidationError as exc:
            self._refuse(ticket, invalid_request_from(exc, prefix="payload."))
            return
        except TekError as err:
            self._refuse(ticket, err)
            return
        try:
            ref.tell(ticket)
        except pykka.ActorDeadError:
            self.live.pop(session_id, None)
            self._live_ref(session_id).tell(ticket)

    @staticmethod
    def _refuse(ticket: Ticket, error: TekError) -> None:
        if ticket.claim():
            ticket.respond(ticket, False, error)

    def _live_ref(self, session_id: str) -> pykka.ActorRef[Any]:
        entry = self.live.get(session_id)
        if entry is not None and entry.ref.is_alive():
            entry.used = self.ctx.clock.monotonic()
            self.live.move_to_end(session_id)
            return entry.ref
        incarnation = self.incarnations.get(session_id, 0) + 1
        self.incarnations[session_id] = incarnation
        name = f"session-{session_id}"
        self.ctx.journal.fence(name, incarnation)
        manager = self.actor_ref
        meta = self.state.sessions[session_id]
        ctx = ActorContext(
            name=name,
            incarnation=incarnation,
            journal=self.ctx.journal,
            clock=self.ctx.clock,
            publish=self.ctx.publish,
            report_exit=lambda n, inc, exc, tb: tell_quietly(
                manager, SessionExited(session_id, inc, repr(exc) if exc is not None else None)
            ),
            options={
                "session_id": session_id,
                "model": meta.model,
                "config": self.config,
                "manager": manager,
                "workdir": meta.cwd or self._workspace(),
                "estimator": self.ctx.options.get("estimator"),
                "snapshot_every": 100,
            },
            lookup=self.ctx.lookup,
        )
        ref = ModelSessionActor.start(ctx)
        self.live[session_id] = _Live(ref, incarnation, self.ctx.clock.monotonic())
        self._bound()
        return ref

    def _workspace(self) -> str:
        """Where the tools of a session created without a cwd work."""
        folder = Path(self.ctx.options.get("workspace") or Path.cwd())
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def _passivated(self, session_id: str, incarnation: int) -> None:
        current = self.live.get(session_id)
        if current is None or current.incarnation != incarnation:
            return
        del self.live[session_id]
        try:  # requests forwarded before now are handled first (the inbox is FIFO)
            current.ref.stop(block=True, timeout=10)
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        self.publish("session.passivated", {"session": session_id})
        self.crashes.pop(session_id, None)  # it went quiet: a later crash starts the backoff over
        if self._has_open_turns(session_id):
            self._live_ref(session_id)  # one of those requests was a message: answer it

    def _crashed_session(self, session_id: str, error: str) -> None:
        crashes = self.crashes[session_id] = self.crashes.get(session_id, 0) + 1
        if not self._has_open_turns(session_id):
            self.log.error("session {} crashed: {}", session_id, error)
            return
        delay = min(MAX_RESUME_S, FIRST_RESUME_S * 2 ** (crashes - 1))
        self.log.error(
            "session {} crashed with messages unanswered ({}); resuming it in {:.1f} s",
            session_id,
            error,
            delay,
        )
        self.after(delay, _Resume(session_id))

    def _has_open_turns(self, session_id: str) -> bool:
        mark = open_mark(session_id)
        return session_id in self.state.sessions and mark in self.ctx.journal.marks(mark)

    def _bound(self) -> None:
        """Past `limits.sessions_live`, ask the least recently used to passivate."""
        over = len(self.live) - self.config.limits.sessions_live
        for entry in list(self.live.values())[: max(0, over)]:
            entry.ref.tell(Passivate())

    # -- internal messages -------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            idle = self.config.limits.session_idle_s
            now = self.ctx.clock.monotonic()
            for entry in self.live.values():
                if now - entry.used >= idle:
                    entry.ref.tell(Passivate())
            self._bound()
            self.after(self._tick_s(), _Tick())
            return None
        if isinstance(message, Passivated):
            self._passivated(message.session_id, message.incarnation)
            return None
        if isinstance(message, SessionExited):
            current = self.live.get(message.session_id)
            if current is not None and current.incarnation == message.incarnation:
                del self.live[message.session_id]
            if message.error:
                self._crashed_session(message.session_id, message.error)
            return None
        if isinstance(message, _Resume):
            if message.session_id not in self.live and self._has_open_turns(message.session_id):
                self._live_ref(message.session_id)
            return None
        if isinstance(message, CrashSession):
            target = self.live.get(message.session_id)
            if target is not None:
                tell_quietly(target.ref, Fault("injected fault"))
            return target is not None
        return super().on_message(message)
