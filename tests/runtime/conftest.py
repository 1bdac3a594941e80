"""A small supervised tree on a real journal and a FakeClock, for runtime tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from tek_actors.errors import Conflict, NotFound
from tek_actors.runtime import (
    ActorContext,
    Backoff,
    ChildSpec,
    Directory,
    FakeClock,
    Intensity,
    PersistentActor,
    StatusQuery,
    Strategy,
    Supervisor,
    SupervisorHandle,
    Ticket,
    command,
)
from tek_actors.store import Journal, NewEvent
from tek_actors.wire import EmptyPayload, WireModel


class CounterState(BaseModel):
    total: int = 0


class AddPayload(WireModel):
    n: int


class CounterActor(PersistentActor[CounterState]):
    domain = "counter"
    state_model = CounterState
    snapshot_every = 3

    def apply(self, state: CounterState, event: NewEvent) -> CounterState:
        return CounterState(total=state.total + event.data["n"])

    @command("counter.add", AddPayload)
    def add(self, payload: AddPayload) -> dict[str, int]:
        if payload.n == 0:
            raise NotFound("zero is not a thing here")
        if payload.n < 0:
            raise ZeroDivisionError("a bug while handling a request")
        if payload.n == 999:
            raise SystemExit("an actor calling sys.exit must not stop the process")
        return self.persist(
            NewEvent("counter.added", {"n": payload.n}),  # type: ignore[no-any-return]
            result=lambda s: {"total": s.total},
        )

    @command("counter.get", EmptyPayload)
    def get(self, payload: EmptyPayload) -> dict[str, int]:
        return {"total": self.state.total, "seq": self.seq}


class OtherActor(CounterActor):
    domain = "other"


@dataclass(frozen=True)
class Finish:
    ticket: Ticket
    n: int


class LaterPayload(WireModel):
    n: int
    delay_s: float


class PokePayload(WireModel):
    name: str


class RelayPayload(WireModel):
    name: str
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)


class WaiterActor(PersistentActor[CounterState]):
    """Answers later (defer/after/answer), and tells other actors by name (send)."""

    domain = "waiter"
    state_model = CounterState

    def apply(self, state: CounterState, event: NewEvent) -> CounterState:
        return CounterState(total=state.total + event.data["n"])

    @command("waiter.add_later", LaterPayload)
    def add_later(self, payload: LaterPayload) -> None:
        self.after(payload.delay_s, Finish(self.defer(), payload.n))

    @command("waiter.poke", PokePayload)
    def poke(self, payload: PokePayload) -> bool:
        return self.send(payload.name, StatusQuery())

    @command("waiter.relay", RelayPayload)
    def relay(self, payload: RelayPayload) -> None:
        """Ask actor `name` (Actor.request); answer {ok, value or error code, started}."""
        ticket = self.defer()

        def then(ok: bool, value: Any) -> None:
            if ok:
                self.answer(ticket, {"ok": True, "value": value})
                return
            started = (value.details or {}).get("started")
            self.answer(ticket, {"ok": False, "code": value.code, "started": started})

        self.request(payload.name, payload.type, payload.payload, then, timeout=5.0)

    @command("waiter.get", EmptyPayload)
    def get(self, payload: EmptyPayload) -> dict[str, int]:
        return {"total": self.state.total}

    def on_message(self, message: Any) -> Any:
        if isinstance(message, Finish):
            value = self.persist(
                NewEvent("waiter.added", {"n": message.n}),
                result=lambda s: {"total": s.total},
                ticket=message.ticket,
            )
            self.answer(message.ticket, value)
            return None
        return super().on_message(message)


class TakePayload(WireModel):
    n: int
    pad: int = 0  # bytes of padding in the event (to fill a disk)


class LedgerActor(PersistentActor[CounterState]):
    """Pipelined commands: `take` is refused (conflict) when the balance, pending gives
    included, does not cover it."""

    domain = "ledger"
    state_model = CounterState

    def apply(self, state: CounterState, event: NewEvent) -> CounterState:
        sign = 1 if event.type == "ledger.given" else -1
        return CounterState(total=state.total + sign * event.data["n"])

    @command("ledger.give", TakePayload, pipelined=True)
    def give(self, payload: TakePayload) -> Any:
        event = NewEvent("ledger.given", {"n": payload.n, "pad": "x" * payload.pad})
        return self.persist_async(event, result=lambda s: {"total": s.total})

    @command("ledger.take", TakePayload, pipelined=True)
    def take(self, payload: TakePayload) -> Any:
        if self.latest.total < payload.n:
            raise Conflict("not enough", details={"total": self.latest.total})
        event = NewEvent("ledger.taken", {"n": payload.n, "pad": "x" * payload.pad})
        return self.persist_async(event, result=lambda s: {"total": s.total})

    @command("ledger.peek", EmptyPayload, reads=True)
    def peek(self, payload: EmptyPayload) -> dict[str, int]:
        return {"total": self.state.total, "seq": self.seq}

    @command("ledger.get", EmptyPayload)
    def get(self, payload: EmptyPayload) -> dict[str, int]:
        return {"total": self.state.total, "seq": self.seq}


class Tree:
    """A supervisor with `counter` then `other`, answering tickets synchronously for tests."""

    def __init__(self, path: Path, strategy: Strategy, **limits: Any) -> None:
        self.path = path
        self.clock = FakeClock()
        self.journal = Journal(path, boot_id="t").open()
        self.directory = Directory()
        self.down: list[str] = []
        self._down_cond = threading.Condition()
        self.restarted: list[tuple[str, int, str]] = []
        self.degraded: list[bool] = []
        self.escalated = threading.Event()
        child = {
            "intensity": Intensity(limits.get("max_restarts", 5), 30.0),
            "backoff": Backoff(0.5, 30.0, 2.0, 0.0),
        }
        specs = [
            ChildSpec("counter", CounterActor, **child),
            ChildSpec("other", OtherActor, **child),
            ChildSpec("waiter", WaiterActor, **child),
            ChildSpec("ledger", LedgerActor, **child),
        ]
        self.handle: SupervisorHandle | None = None
        ref = Supervisor.start(
            specs,
            clock=self.clock,
            directory=self.directory,
            make_context=self._context,
            strategy=strategy,
            intensity=Intensity(limits.get("tree_max", 1), 60.0),
            backoff=Backoff(1.0, 30.0, 2.0, 0.0),
            on_child_down=self._on_down,
            on_restarted=lambda n, r, e: self.restarted.append((n, r, e)),
            on_degraded=self.degraded.append,
            on_escalate=lambda reason: self.escalated.set(),
        )
        self.handle = SupervisorHandle(ref)
        assert self.handle.start_all(timeout=5)

    def _on_down(self, name: str) -> None:
        with self._down_cond:
            self.down.append(name)
            self._down_cond.notify_all()

    def wait_down(self, count: int) -> None:
        """Block until the supervisor has seen `count` crashes in all."""
        with self._down_cond:
            assert self._down_cond.wait_for(lambda: len(self.down) >= count, 5)
        assert self.handle is not None
        self.handle.sync()  # the handler that reported it has finished (timers are armed)

    def _context(self, name: str, incarnation: int, options: dict[str, Any]) -> ActorContext:
        assert self.handle is not None
        return ActorContext(
            name,
            incarnation,
            self.journal,
            self.clock,
            lambda n, d: None,
            self.handle.child_exited,
            options,
            self.directory.lookup,
        )

    def ask(self, name: str, type_name: str, payload: dict[str, Any] | None = None) -> Any:
        """Send a request ticket and wait for its answer: (ok, value)."""
        done = threading.Event()
        answer: list[Any] = []

        def respond(ticket: Ticket, ok: bool, value: Any) -> None:
            answer.append((ok, value))
            done.set()

        ref = self.directory.lookup(name)
        assert ref is not None, f"{name} is not running"
        ref.tell(Ticket(type_name, payload or {}, respond))
        assert done.wait(5), "no answer"
        return answer[0]

    def send(self, name: str, requests: list[tuple[str, dict[str, Any]]]) -> Answers:
        """Tell `name` every request at once (none waits for another); their answers, in the
        order they come."""
        answers = Answers()
        ref = self.directory.lookup(name)
        assert ref is not None, f"{name} is not running"
        for i, (type_name, payload) in enumerate(requests):
            ref.tell(Ticket(type_name, payload, answers.respond_as(i)))
        return answers

    def crash(self, name: str, how: str = "fault") -> None:
        """Crash `name` and return once the supervisor has handled the crash."""
        ref = self.directory.lookup(name)
        assert ref is not None and self.handle is not None
        if how == "fault":
            assert self.handle.inject_fault(name)
        else:
            self.ask(name, "counter.add", {"n": -1})
        assert ref.actor_stopped.wait(5)
        self.handle.sync()

    def settle(self, seconds: float) -> None:
        """Let fake time pass, then wait until the supervisor handled what that fired."""
        assert self.handle is not None
        self.clock.advance(seconds)
        self.handle.sync()

    def close(self) -> None:
        assert self.handle is not None
        self.handle.stop_all(timeout=10)
        self.handle.stop(timeout=10)
        self.journal.close()


class Answers:
    """Answers to requests sent at once: (index, ok, value) in the order they came."""

    def __init__(self) -> None:
        self.got: list[tuple[int, bool, Any]] = []
        self._cond = threading.Condition()

    def respond_as(self, index: int) -> Any:
        def respond(ticket: Ticket, ok: bool, value: Any) -> None:
            with self._cond:
                self.got.append((index, ok, value))
                self._cond.notify_all()

        return respond

    def wait(self, count: int, *, timeout: float = 20.0) -> list[tuple[int, bool, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= count, timeout), self.got
            return list(self.got)


@pytest.fixture
def make_tree(tmp_path: Path) -> Iterator[Any]:
    trees: list[Tree] = []

    def make(strategy: Strategy = Strategy.ONE_FOR_ONE, **limits: Any) -> Tree:
        tree = Tree(tmp_path / f"j{len(trees)}.db", strategy, **limits)
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.close()
