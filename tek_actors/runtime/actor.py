"""The actor bases: `Actor` (crash-safe pykka actor) and `PersistentActor` (event-sourced state).

pykka's three failure paths (an exception in an ask goes back to the caller and the actor runs
on; one in a tell stops it through `on_failure`; one in `on_start` stops it silently) are folded
into one here. Every message goes through `on_receive`, which answers a domain error (a
`TekError` that is not `Internal`: bad input, not found, conflict) as an error reply and treats
anything else, `BaseException` included, as a crash: the actor marks itself crashed, answers the
request it was serving with `internal`, reports to its supervisor, and stops at once without
touching its state again. The supervisor starts a new incarnation, which rehydrates.

Commands are methods decorated with `@command("domain.verb", PayloadModel)`; they run on the
actor's thread, take the validated payload and return the result (any msgpack-able value).
A `PersistentActor`'s command may be `pipelined` (it persists with `persist_async` and its
answer waits, in order, until durable) or `reads` (answered from the durable state once
nothing is pending); see runtime/persistent.py.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pykka
from loguru import logger
from pydantic import BaseModel, ValidationError

from tek_actors.errors import Internal, StorageUnavailable, TekError, Unavailable, UnknownType
from tek_actors.runtime.clock import Clock, Timer
from tek_actors.runtime.messages import Fault, StatusQuery, Ticket
from tek_actors.store import Journal
from tek_actors.wire import invalid_request_from

__all__ = ["Actor", "ActorContext", "command", "tell_quietly"]

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ActorContext:
    """What the gateway hands an actor: its name, its incarnation and its collaborators."""

    name: str
    incarnation: int
    journal: Journal
    clock: Clock
    publish: Callable[[str, dict[str, Any]], None]
    report_exit: Callable[[str, int, BaseException | None, str], None]
    options: dict[str, Any] = field(default_factory=dict)
    lookup: Callable[[str], pykka.ActorRef[Any] | None] = lambda name: None


@dataclass(frozen=True, slots=True)
class _Command:
    type_name: str
    payload_model: type[BaseModel]
    method: str
    pipelined: bool = False
    reads: bool = False


def command(
    type_name: str,
    payload_model: type[BaseModel],
    *,
    pipelined: bool = False,
    reads: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as the handler of the request type `type_name`.

    `pipelined` (PersistentActor only): the command does not wait for earlier persists; it reads
    `self.latest`, changes state with `persist_async`, and its answer (a result or a domain
    error) is sent after every earlier pipelined command's, once durable. `reads`: the command
    changes nothing and answers from the durable `self.state`. It, and any other command, first
    waits until every pending persist is durable."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__tek_command__ = (type_name, payload_model, pipelined, reads)  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True, slots=True)
class _Answered:
    """The answer to a request this actor sent another actor (see Actor.request)."""

    ticket: Ticket
    ok: bool
    value: Any


@dataclass(frozen=True, slots=True)
class _Unclaimed:
    """A request's claim timer ran out."""

    ticket: Ticket


def tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    """Tell, from a timer or a callback, an actor that may have stopped meanwhile (then: no-op)."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass


class Actor(pykka.ThreadingActor):
    """A pykka actor that never runs on with broken state.

    Subclasses set `domain`, define `@command` methods, and may override `on_message` for
    internal messages, `on_begin` (runs on the actor thread before any message; a failure is a
    crash) and `on_end` (clean stop only).
    """

    domain: ClassVar[str] = ""
    commands: ClassVar[dict[str, _Command]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = dict(cls.commands)
        for attr, value in list(vars(cls).items()):
            spec = getattr(value, "__tek_command__", None)
            if spec is not None:
                found[spec[0]] = _Command(spec[0], spec[1], attr, *spec[2:])
        cls.commands = found

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.name = ctx.name
        self.log = logger.bind(actor=ctx.name)
        self._crashed = False
        self._ticket: Ticket | None = None
        self._deferred: set[Ticket] = set()
        self._timers: list[Timer] = []
        self._requests: dict[Ticket, tuple[Callable[[bool, Any], None], Timer | None]] = {}

    # -- pykka hooks -------------------------------------------------------------------------

    def on_start(self) -> None:
        try:
            fail_starts = self.ctx.options.get("fail_start")
            if fail_starts:
                raise RuntimeError(f"injected start failure ({fail_starts})")
            self.on_begin()
        except BaseException as exc:
            self._crash(exc)

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        try:
            self.on_release()
        except Exception:
            self.log.opt(exception=True).error("{} failed to release its resources", self.name)
        if self._crashed:
            return
        try:
            self.on_end()
        except Exception:
            self.log.opt(exception=True).error("{} failed while stopping", self.name)
        self.ctx.report_exit(self.name, self.ctx.incarnation, None, "")

    def on_failure(self, *exc_info: Any) -> None:
        # Only reachable if on_receive itself was bypassed; treat it as the crash it is.
        if not self._crashed and exc_info[1] is not None:
            self._crash(exc_info[1], stop=False)

    def on_receive(self, message: Any) -> Any:
        if self._crashed:
            if isinstance(message, Ticket) and message.claim():
                message.respond(message, False, Internal(f"{self.name} has crashed"))
            return None
        try:
            if isinstance(message, Ticket):
                self._serve(message)
                return None
            if isinstance(message, Fault):
                raise RuntimeError(f"{message.reason} in {self.name}")
            if isinstance(message, StatusQuery):
                return self.status()
            if isinstance(message, (_Answered, _Unclaimed)):
                self._request_settled(message)
                return None
            return self.on_message(message)
        except BaseException as exc:
            self._crash(exc)
            return None

    # -- overridable -------------------------------------------------------------------------

    def on_begin(self) -> None:
        """Runs on the actor's thread before any message (rehydration lives here)."""

    def on_end(self) -> None:
        """Runs on a clean stop (not after a crash)."""

    def on_release(self) -> None:
        """Runs on every stop, clean or crash, before `on_end`: release threads, sockets and
        files the actor holds. It must not touch the actor's state (after a crash that state
        may be half-changed)."""

    def on_message(self, message: Any) -> Any:
        """Internal (non-request) messages. Unknown ones are a bug, hence a crash."""
        raise TypeError(f"{self.name} got an unexpected message {message!r}")

    def status(self) -> dict[str, Any]:
        return {}

    # -- requests ----------------------------------------------------------------------------

    def _serve(self, ticket: Ticket) -> None:
        if not ticket.claim():
            return  # the frontend gave up on it (deadline, shutdown): it must not run
        spec = self.commands.get(ticket.type)
        in_order = False
        try:
            if spec is None:
                raise UnknownType(f"{self.name} does not handle {ticket.type!r}")
            try:
                payload = spec.payload_model.model_validate(ticket.payload)
            except ValidationError as exc:
                raise invalid_request_from(exc, prefix="payload.") from exc
            self._ticket = ticket
            in_order = spec.pipelined  # from here on, the answer may depend on pending state
            result = getattr(self, spec.method)(payload)
            if ticket in self._deferred:
                return  # the command answers later, through answer()
        except TekError as err:
            self._deferred.discard(ticket)
            if not isinstance(err, Internal):
                if in_order:
                    self.reply_in_order(ticket, False, err)
                else:
                    ticket.respond(ticket, False, err)
                return
            ticket.respond(ticket, False, err)
            raise
        except BaseException:
            ticket.respond(
                ticket,
                False,
                Internal(
                    f"{self.name} crashed while handling {ticket.type}; it is restarting. "
                    "The change may or may not have been applied: resend with the same idem "
                    "key to find out.",
                    retry_after_ms=500,
                ),
            )
            raise
        finally:
            self._ticket = None
        if in_order:
            self.reply_in_order(ticket, True, result)
        else:
            ticket.respond(ticket, True, result)

    def reply_in_order(self, ticket: Ticket, ok: bool, value: Any) -> None:
        """Answer a pipelined command: here at once (a PersistentActor queues it behind the
        persists still pending)."""
        ticket.respond(ticket, ok, value)

    def defer(self) -> Ticket:
        """From a command: answer this request later with `answer()` (e.g. after other actors
        acknowledged). If the actor crashes first, the request is answered `internal`."""
        ticket = self._ticket
        if ticket is None:
            raise RuntimeError("defer() is only for commands")
        self._deferred.add(ticket)
        return ticket

    def answer(self, ticket: Ticket, value: Any = None, *, error: TekError | None = None) -> None:
        """Answer a deferred request: its result, or `error`."""
        self._deferred.discard(ticket)
        if error is not None:
            ticket.respond(ticket, False, error)
        else:
            ticket.respond(ticket, True, value)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Publish an ephemeral event (not journaled, never replayed)."""
        self.ctx.publish(name, data)

    def send(self, name: str, message: Any) -> bool:
        """Tell the current incarnation of actor `name`; False if it is not running now."""
        ref = self.ctx.lookup(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def after(self, delay: float, message: Any) -> Timer:
        """Tell this actor `message` after `delay` seconds of the clock (cancelled on stop)."""
        ref = self.actor_ref
        self._timers = [t for t in self._timers if not t.cancelled]
        timer = self.ctx.clock.call_later(delay, lambda: tell_quietly(ref, message))
        self._timers.append(timer)
        return timer

    def request(
        self,
        name: str,
        type: str,
        payload: dict[str, Any],
        then: Callable[[bool, Any], None],
        *,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        """Send actor `name` a request, as a client would, and call `then(ok, value)` on this
        actor's thread with the answer (`value` is the result, or the TekError). Never blocks.

        A request that was never started is answered `Unavailable` with `details.started:
        False`: `name` is not running, or it did not claim the request within `timeout` (it
        died with the request in its inbox); the request is cancelled first, so it can never
        start later, and sending it again is safe even when it changes something. Once claimed,
        an answer always comes: the result, a domain error, or `internal` if that actor crashed
        while handling it (then the change may or may not have been made)."""
        ref = self.actor_ref
        ticket = Ticket(
            type, payload, lambda t, ok, value: tell_quietly(ref, _Answered(t, ok, value))
        )
        if not self.send(name, ticket):
            self._requests[ticket] = (then, None)
            ticket.cancel()
            never = Unavailable(f"{name} is not running", details={"started": False})
            tell_quietly(ref, _Answered(ticket, False, never))
            return
        self._requests[ticket] = (then, self.after(timeout, _Unclaimed(ticket)))

    def _request_settled(self, message: _Answered | _Unclaimed) -> None:
        ticket = message.ticket
        if isinstance(message, _Unclaimed):
            if not ticket.cancel():
                return  # it started: its answer will come
            message = _Answered(
                ticket,
                False,
                Unavailable(f"{ticket.type} was not taken up in time", details={"started": False}),
            )
        pending = self._requests.pop(ticket, None)
        if pending is None:
            return  # answered already
        then, timer = pending
        if timer is not None:
            timer.cancel()
        then(message.ok, message.value)

    # -- crashing ----------------------------------------------------------------------------

    def _crash(self, exc: BaseException, *, stop: bool = True) -> None:
        self._crashed = True
        for timer in self._timers:
            timer.cancel()
        ticket, self._ticket = self._ticket, None
        if ticket is not None and ticket.started and ticket not in self._deferred:
            ticket.respond(ticket, False, Internal(f"{self.name} crashed: {exc}"))
        for waiting in self._deferred:  # started, never answered: the outcome is unknown
            waiting.respond(waiting, False, Internal(f"{self.name} crashed: {exc}"))
        self._deferred.clear()
        tb = "".join(traceback.format_exception(exc))
        if isinstance(exc, StorageUnavailable):  # the journal has said so at ERROR already
            self.log.warning("{} stops and rehydrates: {}", self.name, exc)
        else:
            self.log.opt(exception=exc).error("{} crashed: {!r}", self.name, exc)
        try:
            self.ctx.report_exit(self.name, self.ctx.incarnation, exc, tb)
        finally:
            if stop:
                self._stop()
