"""SessionManager: the sessions' directory, and the owner of their live actors.

It journals what a session is (`session.created`, `session.renamed`, `session.deleted`) and
forwards every request about one session's conversation (`sessions.send`, `sessions.get`) to
that session's ModelSessionActor, starting it on demand. Live session actors are bounded: one
idle longer than `limits.session_idle_s` is passivated (it stops, and snapshots what changed as
it does), and past `limits.sessions_live` the least recently used are (one in a turn goes once
its turns are over). Ten thousand stored sessions cost ten thousand rows of state here and no
threads.

The manager's mailbox never waits on a session: a session asked to go says when it is idle
(`Passivated`), the manager stops it without waiting and holds the requests that come for it
meanwhile; once it has stopped (`SessionExited`), they go to its next incarnation, in the order
they came. A session actor's loop runs on one of the manager's kept threads (_threads.py), and
the journal fence against an older incarnation is its own first step, taken only when that one
may not have stopped cleanly.

A session actor that crashes is started again (it rehydrates) by the next request for it, or,
if it has unanswered messages, after a backoff (0.5 s, doubling to 60 s while it keeps crashing):
a turn a bug cut short carries on without anyone asking. The journal fences off its older
incarnation first, as the supervisor does for its children.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pykka
from pydantic import BaseModel, Field, StrictStr, ValidationError

from tek_actors.config import Config, ConfigDependent
from tek_actors.errors import InvalidValue, NotFound, TekError, Unavailable
from tek_actors.runtime import ActorContext, Fault, PersistentActor, Ticket, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.sessions._threads import SessionThreads
from tek_actors.sessions.messages import Passivate, Passivated, SessionExited, Unserved
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
THREADS_CLOSE_S = 10.0
SPARE_THREADS = 16  # threads kept waiting for the next activation (_threads.py)
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


class _Launched(ModelSessionActor):
    """A session actor as the manager starts it: nothing of its start waits on the manager's
    thread. Its loop runs on one of the manager's kept threads (_threads.py), not on a thread
    of its own: pykka's would be made, started (a hand-off that takes milliseconds on a loaded
    machine) and ended at every activation. Whatever is told to the actor before its loop runs
    waits in its inbox, as for any actor. The journal fence, a round trip to the journal's
    writer, is this actor's own first step."""

    @staticmethod
    def _create_actor_inbox() -> Any:  # pykka's hook for actor types
        # The same FIFO as pykka's queue.Queue (put, get, empty are all pykka uses), in C: no
        # Python locks to build at each activation, nor to take at each message
        return queue.SimpleQueue()

    def _start_actor_loop(self) -> None:  # pykka's hook for actor types
        threads: SessionThreads = self.ctx.options["threads"]
        threads.run(f"ModelSessionActor-{self.session_id}", self._actor_loop)

    def _actor_loop_teardown(self) -> None:  # pykka's hook, once the actor has stopped
        # pykka drops the tells left in the inbox, and a crash leaves the requests forwarded
        # behind the message that crashed it there: hand them back to the manager instead, for
        # the next incarnation. Anything else (asks) is left to pykka, which answers it.
        rest, manager = [], self.ctx.options["manager"]
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            if isinstance(envelope.message, Ticket) and envelope.reply_to is None:
                tell_quietly(manager, Unserved(self.session_id, envelope.message))
            else:
                rest.append(envelope)
        for envelope in rest:
            self.actor_inbox.put(envelope)
        super()._actor_loop_teardown()

    def on_begin(self) -> None:
        if self.ctx.options["fence"]:  # an older incarnation may not have stopped cleanly
            self.ctx.journal.fence(self.name, self.ctx.incarnation)
        super().on_begin()


@dataclass
class _Live:
    ref: pykka.ActorRef[Any]
    incarnation: int
    used: float
    asked: bool = False  # to passivate: it goes once no turn runs
    # A message sent after it was asked may have reached it after it passivated: then its
    # turn is left to the next incarnation, as the open mark says (read only then).
    maybe_open: bool = False


@dataclass
class _Stopping:
    """A session that passivated and is stopping: the requests for it wait here."""

    incarnation: int
    stopped: pykka.Future[bool]
    held: list[Ticket]
    maybe_open: bool


class SessionManager(ConfigDependent, PersistentActor[SessionsState]):
    domain = "sessions"
    state_model = SessionsState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.config = Config()
        self.live: OrderedDict[str, _Live] = OrderedDict()  # least recently used first
        self.stopping: dict[str, _Stopping] = {}
        self.incarnations: dict[str, int] = {}
        # Sessions whose last incarnation stopped cleanly under this manager: it wrote nothing
        # after its stop, so the next one needs no journal fence (a round trip to the writer).
        self.stopped_cleanly: set[str] = set()
        self.crashes: dict[str, int] = {}  # crashes in a row, per session (for the backoff)
        self.workspace: str | None = None
        self.threads: SessionThreads | None = None
        self.replaying = False  # rehydrate() is applying the journal: see apply

    def apply(self, state: SessionsState, event: NewEvent) -> SessionsState:
        data = event.data
        # Rehydrating, nobody else holds the state being built: it may grow in place (a copy
        # per event makes a first boot of ten thousand sessions quadratic). Otherwise pure.
        sessions = state.sessions if self.replaying else dict(state.sessions)
        if event.type == "session.created":
            sessions[data["id"]] = SessionMeta.model_validate(data)
        elif event.type == "session.renamed" and data["id"] in sessions:
            sessions[data["id"]] = sessions[data["id"]].model_copy(update={"title": data["title"]})
        elif event.type == "session.deleted":
            sessions.pop(data["id"], None)
        return state if self.replaying else SessionsState(sessions=sessions)

    def rehydrate(self) -> None:
        self.replaying = True
        try:
            super().rehydrate()
        finally:
            self.replaying = False

    def public_state(self) -> dict[str, Any]:
        return {"sessions": [m.model_dump(mode="json") for m in self.state.sessions.values()]}

    def configure(self, config: Config) -> None:
        self.config = config
        # Every live session has it before this acknowledges (they never ask us back, and are
        # asked all at once, not in turn). One that stops meanwhile gets it when it starts again.
        handed = [entry.ref.ask(config, block=False) for entry in self.live.values()]
        deadline = time.monotonic() + 5.0
        for future in handed:
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                future.get(timeout=max(0.0, deadline - time.monotonic()))

    def on_begin(self) -> None:
        super().on_begin()
        self.threads = SessionThreads(keep_idle=SPARE_THREADS)
        for mark in self.ctx.journal.marks(OPEN_MARK):  # unanswered messages: answer them
            session_id = mark.removeprefix(OPEN_MARK)
            if session_id in self.state.sessions:
                self.log.info("session {} has unanswered messages: resuming it", session_id)
                self._live(session_id)
        self.after(self._tick_s(), _Tick())

    def on_release(self) -> None:
        stops = [entry.ref.stop(block=False) for entry in self.live.values()]
        stops += [stopping.stopped for stopping in self.stopping.values()]
        deadline = time.monotonic() + 10.0
        for stopped in stops:
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                stopped.get(timeout=max(0.0, deadline - time.monotonic()))
        for stopping in self.stopping.values():
            for ticket in stopping.held:  # never started: safe to send again
                self._refuse(ticket, Unavailable("sessions is restarting", retry_after_ms=500))
        self.live.clear()
        self.stopping.clear()
        if self.threads is not None:  # after the stops: each loop has run to its end
            self.threads.close(THREADS_CLOSE_S)

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
        stopping = self.stopping.pop(payload.id, None)
        stops = [entry.ref.stop(block=False)] if entry is not None else []
        stops += [stopping.stopped] if stopping is not None else []
        for stopped in stops:
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                stopped.get(timeout=10)
        event = NewEvent("session.deleted", {"id": payload.id})
        reply = self.persist(
            event,
            result=lambda s: {"id": payload.id, "deleted": True},
            marks={open_mark(payload.id): False},
        )
        for ticket in stopping.held if stopping is not None else []:
            self._refuse(ticket, NotFound(f"session {payload.id} was deleted"))
        return reply  # type: ignore[no-any-return]

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
            stopping = self.stopping.get(session_id)
            if stopping is not None:
                stopping.held.append(ticket)  # for its next incarnation, once this one stopped
                return
            entry = self._live(session_id)
        except ValidationError as exc:
            self._refuse(ticket, invalid_request_from(exc, prefix="payload."))
            return
        except TekError as err:
            self._refuse(ticket, err)
            return
        if ticket.type == "sessions.send":
            entry.maybe_open |= entry.asked
        try:
            entry.ref.tell(ticket)
        except pykka.ActorDeadError:  # it died, and we have not heard yet how: fence it off
            self.live.pop(session_id, None)
            self.stopped_cleanly.discard(session_id)
            self._live(session_id).ref.tell(ticket)

    @staticmethod
    def _refuse(ticket: Ticket, error: TekError) -> None:
        if ticket.claim():
            ticket.respond(ticket, False, error)

    def _live(self, session_id: str) -> _Live:
        """The session's live actor, started if need be (the most recently used now)."""
        entry = self.live.get(session_id)
        if entry is not None and entry.ref.is_alive():
            entry.used = self.ctx.clock.monotonic()
            self.live.move_to_end(session_id)
            return entry
        # Numbered after this manager's own incarnation, so that a session actor an earlier
        # manager left behind has a lower number, which the journal's fence refuses.
        incarnation = self.incarnations.get(session_id, self.ctx.incarnation << 32) + 1
        self.incarnations[session_id] = incarnation
        name = f"session-{session_id}"
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
                "mcp_catalog": self.ctx.options.get("mcp_catalog"),
                "snapshot_every": 100,
                # the session fences (on its own thread) only if an older one may still write
                "fence": session_id not in self.stopped_cleanly,
                "threads": self.threads,
            },
            lookup=self.ctx.lookup,
        )
        self.stopped_cleanly.discard(session_id)
        entry = _Live(_Launched.start(ctx), incarnation, self.ctx.clock.monotonic())
        self.live[session_id] = entry
        self._bound()
        return entry

    def _workspace(self) -> str:
        """Where the tools of a session created without a cwd work."""
        if self.workspace is None:
            folder = Path(self.ctx.options.get("workspace") or Path.cwd())
            folder.mkdir(parents=True, exist_ok=True)
            self.workspace = str(folder)
        return self.workspace

    def _passivated(self, session_id: str, incarnation: int) -> None:
        """The session is idle and going: stop it, without waiting. Requests forwarded to it
        before now are handled first (its inbox is FIFO); later ones wait here."""
        current = self.live.get(session_id)
        if current is None or current.incarnation != incarnation:
            return
        del self.live[session_id]
        stopped = current.ref.stop(block=False)
        self.stopping[session_id] = _Stopping(incarnation, stopped, [], current.maybe_open)

    def _exited(self, exited: SessionExited) -> None:
        session_id = exited.session_id
        stopping = self.stopping.get(session_id)
        current = self.live.get(session_id)
        if stopping is not None and stopping.incarnation == exited.incarnation:
            del self.stopping[session_id]
        elif current is not None and current.incarnation == exited.incarnation:
            del self.live[session_id]
        if exited.error:
            self._crashed_session(session_id, exited.error)
        elif session_id not in self.live:
            self.stopped_cleanly.add(session_id)
        if stopping is None or stopping.incarnation != exited.incarnation:
            return
        if not exited.error:
            self.publish("session.passivated", {"session": session_id})
            self.crashes.pop(session_id, None)  # it went quiet: a crash starts the backoff over
        # A message that reached it after it passivated is journaled, and its turn is left to
        # the next incarnation (the open mark says so); requests held here go there too.
        if stopping.held or (stopping.maybe_open and self._has_open_turns(session_id)):
            ref = self._live(session_id).ref
            for ticket in stopping.held:
                ref.tell(ticket)

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
        """Past `limits.sessions_live`, ask the least recently used to passivate: as many as
        are over, counting those asked already (each is asked once, and goes when idle)."""
        over = len(self.live) - self.config.limits.sessions_live
        if over <= 0:
            return
        going = sum(1 for entry in self.live.values() if entry.asked)
        for entry in self.live.values():
            if going >= over:
                return
            if not entry.asked:
                self._ask_to_passivate(entry)
                going += 1

    @staticmethod
    def _ask_to_passivate(entry: _Live) -> None:
        entry.asked = True
        tell_quietly(entry.ref, Passivate())

    # -- internal messages -------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            idle = self.config.limits.session_idle_s
            now = self.ctx.clock.monotonic()
            for entry in self.live.values():
                if now - entry.used >= idle and not entry.asked:
                    self._ask_to_passivate(entry)
            self._bound()
            self.after(self._tick_s(), _Tick())
            return None
        if isinstance(message, Passivated):
            self._passivated(message.session_id, message.incarnation)
            return None
        if isinstance(message, SessionExited):
            self._exited(message)
            return None
        if isinstance(message, Unserved):
            self._forward(message.ticket)
            return None
        if isinstance(message, _Resume):
            session_id = message.session_id
            idle = session_id not in self.live and session_id not in self.stopping
            if idle and self._has_open_turns(session_id):
                self._live(session_id)
            return None
        if isinstance(message, CrashSession):
            target = self.live.get(message.session_id)
            if target is not None:
                tell_quietly(target.ref, Fault("injected fault"))
            return target is not None
        return super().on_message(message)
