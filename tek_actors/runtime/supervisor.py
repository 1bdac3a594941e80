"""The supervisor: named children, restart types, strategies, intensity, backoff, escalation.

OTP's model on top of pykka, which has none of it. The supervisor is itself a pykka actor; every
decision runs on its thread, so its bookkeeping needs no locks. What other threads may read
(which ref serves a name, each child's state, restarts and last error) lives in a `Directory`.

A child that crashes is restarted after a jittered backoff; while it is down, requests for it are
answered `unavailable` with `retry_after_ms`. Past its intensity (too many restarts in a window)
the supervisor escalates: the gateway reports `degraded` and the whole tree restarts; past the
tree's own intensity, `on_escalate` is called and the gateway exits non-zero, so systemd (or
`tek gateway start`'s parent) restarts the process. Nothing dies silently: every crash is logged
with its traceback, counted, and reported through `on_restarted`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pykka
from loguru import logger

from tek_actors.errors import StorageUnavailable
from tek_actors.runtime._backoff import Backoff, Intensity, RestartWindow
from tek_actors.runtime.actor import Actor, ActorContext, tell_quietly
from tek_actors.runtime.clock import Clock, Timer
from tek_actors.runtime.messages import ChildExited, Fault, RestartDue, StatusQuery

__all__ = [
    "ChildSpec",
    "Directory",
    "RestartType",
    "Strategy",
    "Supervisor",
]


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"  # restart only the child that crashed
    REST_FOR_ONE = "rest_for_one"  # ... and every child started after it
    ONE_FOR_ALL = "one_for_all"  # ... and every child


class RestartType(StrEnum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after a crash
    TEMPORARY = "temporary"  # never restarted


@dataclass(frozen=True)
class ChildSpec:
    """How to start, stop and restart one child actor."""

    name: str
    actor_class: type[Actor]
    restart: RestartType = RestartType.PERMANENT
    shutdown_timeout_s: float = 5.0
    intensity: Intensity = field(default_factory=Intensity)
    backoff: Backoff = field(default_factory=Backoff)
    stable_after_s: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)


class Directory:
    """Thread-safe view of the tree: which ref serves a name or domain, and each child's health."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every change of the tree
        self._version = 0  # counts those changes
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._domains: dict[str, str] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self._retry_at: dict[str, float] = {}

    def route(self, domain: str) -> str | None:
        """The name of the child that serves request domain `domain`."""
        return self._domains.get(domain)

    def lookup(self, name: str) -> pykka.ActorRef[Any] | None:
        return self._refs.get(name)

    def retry_at(self, name: str) -> float | None:
        """Monotonic time at which a child that is down is due back (None if unknown)."""
        return self._retry_at.get(name)

    def state_of(self, name: str) -> str | None:
        """The child's state: running, restarting or stopped (None if never declared)."""
        with self._lock:
            status = self._status.get(name)
            return None if status is None else str(status["state"])

    def status(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: dict(s) for name, s in self._status.items()}

    def wait_settled(
        self,
        *,
        newer_than: int,
        timeout: float,
        abandon: Callable[[], bool] = lambda: False,
    ) -> tuple[int, dict[str, pykka.ActorRef[Any]]] | None:
        """Block until the tree has changed since version `newer_than` (-1: any version will
        do) and no child is restarting; then (the version, the ref serving each running child).
        None once `timeout` passed or `abandon()` is true (checked at every change and `wake`).
        Any thread but the supervisor's (which makes the changes waited for)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if abandon():
                    return None
                settled = all(s["state"] != "restarting" for s in self._status.values())
                if settled and self._version > newer_than:
                    return self._version, dict(self._refs)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def wake(self) -> None:
        """Wake every `wait_settled` (so it looks at its `abandon` again)."""
        with self._changed:
            self._changed.notify_all()

    def _touch(self) -> None:
        """With the lock held: one more change."""
        self._version += 1
        self._changed.notify_all()

    def _declare(self, name: str, domain: str) -> None:
        with self._lock:
            if domain:
                self._domains[domain] = name
            self._status.setdefault(name, {"state": "stopped", "restarts": 0, "last_error": None})
            self._touch()

    def _up(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._refs[name] = ref
            self._retry_at.pop(name, None)
            self._status[name]["state"] = "running"
            self._touch()

    def _down(self, name: str, state: str, retry_at: float | None = None) -> None:
        with self._lock:
            self._refs.pop(name, None)
            self._status[name]["state"] = state
            if retry_at is not None:
                self._retry_at[name] = retry_at
            self._touch()

    def _crashed(self, name: str, error: str) -> None:
        with self._lock:
            status = self._status[name]
            status["restarts"] += 1
            status["last_error"] = error
            self._touch()


@dataclass(frozen=True, slots=True)
class _StartAll:
    timeout_s: float


@dataclass(frozen=True, slots=True)
class _StopAll:
    pass


@dataclass(frozen=True, slots=True)
class _InjectFault:
    name: str
    fail_starts: int


class _Child:
    """The supervisor's bookkeeping for one child (touched only on the supervisor thread)."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.ref: pykka.ActorRef[Any] | None = None
        self.incarnation = 0
        self.stopping = False
        self.window = RestartWindow(spec.intensity)
        self.attempt = 0
        self.started_at = 0.0
        self.fail_starts = 0


class Supervisor(pykka.ThreadingActor):
    """Supervises `specs`, in order. Talk to it through the methods of `SupervisorHandle`."""

    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        clock: Clock,
        directory: Directory,
        make_context: Callable[[str, int, dict[str, Any]], ActorContext],
        strategy: Strategy = Strategy.REST_FOR_ONE,
        intensity: Intensity | None = None,
        backoff: Backoff | None = None,
        on_child_down: Callable[[str], None] = lambda name: None,
        on_restarted: Callable[[str, int, str], None] = lambda name, restarts, error: None,
        on_degraded: Callable[[bool], None] = lambda degraded: None,
        on_escalate: Callable[[str], None] = lambda reason: None,
        on_starting: Callable[[str, int], None] = lambda name, incarnation: None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self._children = {spec.name: _Child(spec) for spec in specs}
        self._order = [spec.name for spec in specs]
        self._clock = clock
        self._directory = directory
        self._make_context = make_context
        self._strategy = strategy
        self._tree_window = RestartWindow(intensity or Intensity(3, 60.0))
        self._tree_backoff = backoff or Backoff(initial_s=1.0, max_s=30.0)
        self._tree_attempt = 0
        self._on_child_down = on_child_down
        self._on_restarted = on_restarted
        self._on_degraded = on_degraded
        self._on_escalate = on_escalate
        self._on_starting = on_starting
        self._rng = rng or random.Random()
        self._generation = 0
        self._timers: list[Timer] = []
        self._degraded = False
        self._escalated = False
        self._last_tree_restart = 0.0
        self._culprit: str | None = None
        for spec in specs:
            directory._declare(spec.name, spec.actor_class.domain)

    # -- messages ----------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._child_exited(message)
        elif isinstance(message, RestartDue):
            self._restart_due(message)
        elif isinstance(message, _StartAll):
            return self._start_all(message.timeout_s)
        elif isinstance(message, _StopAll):
            self._stop_all()
        elif isinstance(message, _InjectFault):
            return self._inject_fault(message)
        elif message == "clear_degraded":
            self._maybe_clear_degraded()
        elif message == "sync":
            return True  # a round trip: everything queued before it has been handled
        return None

    def on_failure(self, *exc_info: Any) -> None:
        # The supervisor itself must never die silently: that is a bug, and the process exits.
        logger.opt(exception=exc_info[1]).error("the supervisor crashed; escalating")
        self._escalate_now(f"supervisor crashed: {exc_info[1]!r}")

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()

    # -- starting and stopping ---------------------------------------------------------------

    def _start_child(self, child: _Child) -> None:
        child.incarnation += 1
        child.stopping = False
        options = dict(child.spec.options)
        if child.fail_starts:
            options["fail_start"] = child.fail_starts
            child.fail_starts -= 1
        self._on_starting(child.spec.name, child.incarnation)  # e.g. fence older incarnations
        ctx = self._make_context(child.spec.name, child.incarnation, options)
        child.started_at = self._clock.monotonic()
        child.ref = child.spec.actor_class.start(ctx)
        self._directory._up(child.spec.name, child.ref)

    def _stop_child(self, child: _Child) -> None:
        ref, child.ref = child.ref, None
        child.stopping = True
        self._directory._down(child.spec.name, "stopped")
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=child.spec.shutdown_timeout_s)
        except pykka.Timeout:
            logger.error(
                "{} did not stop within {}s; abandoning its thread",
                child.spec.name,
                child.spec.shutdown_timeout_s,
            )

    def _start_all(self, timeout_s: float) -> bool:
        """Start every child in order and wait until each has rehydrated (answered a query)."""
        self._generation += 1
        for name in self._order:
            self._start_child(self._children[name])
        ok = True
        for name in self._order:
            ref = self._children[name].ref
            try:
                if ref is not None:
                    ref.ask(StatusQuery(), timeout=timeout_s)
            except (pykka.ActorDeadError, pykka.Timeout):
                ok = False  # its crash report is queued; the normal restart path handles it
        return ok

    def _stop_all(self) -> None:
        self._generation += 1  # any pending restart is void
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for name in reversed(self._order):
            self._stop_child(self._children[name])

    def _inject_fault(self, message: _InjectFault) -> bool:
        child = self._children.get(message.name)
        if child is None or child.ref is None:
            return False
        child.fail_starts = message.fail_starts
        child.ref.tell(Fault("injected fault (test hook)"))
        return True

    # -- crashes -----------------------------------------------------------------------------

    def _child_exited(self, message: ChildExited) -> None:
        child = self._children.get(message.name)
        if child is None or message.incarnation != child.incarnation or child.stopping:
            return  # an old incarnation, or one we are stopping on purpose
        spec = child.spec
        child.ref = None
        if message.error is None and spec.restart != RestartType.PERMANENT:
            self._directory._down(spec.name, "stopped")
            return
        error = repr(message.error) if message.error is not None else "exited unexpectedly"
        self._directory._crashed(spec.name, error)
        self._on_child_down(spec.name)
        if spec.restart == RestartType.TEMPORARY:
            self._directory._down(spec.name, "stopped")
            return
        now = self._clock.monotonic()
        if now - child.started_at >= spec.stable_after_s:
            child.attempt = 0
        # A full or read-only disk is not the child's fault and no restart of the tree fixes
        # it: such a crash restarts the child after its backoff but never escalates.
        refused = isinstance(message.error, StorageUnavailable)
        if not refused and not child.window.record(now):
            logger.error(
                "{} crashed {} times within {}s: escalating",
                spec.name,
                spec.intensity.max_restarts + 1,
                spec.intensity.window_s,
            )
            self._culprit = spec.name
            self._restart_tree(f"{spec.name} exceeded its restart intensity: {error}")
            return
        group = self._group_for(spec.name)
        for name in reversed(group[1:]):
            self._stop_child(self._children[name])
        delay = spec.backoff.delay(child.attempt, self._rng)
        child.attempt += 1
        # The timer first: whoever sees "restarting" (a FakeClock test) may advance the clock.
        self._schedule(delay, RestartDue(tuple(group), self._generation, spec.name))
        for name in group:
            self._directory._down(name, "restarting", retry_at=now + delay)
        logger.warning("{} crashed ({}); restarting {} in {:.2f}s", spec.name, error, group, delay)

    def _group_for(self, name: str) -> list[str]:
        if self._strategy == Strategy.ONE_FOR_ONE:
            return [name]
        if self._strategy == Strategy.ONE_FOR_ALL:
            return [name] + [n for n in self._order if n != name]
        return self._order[self._order.index(name) :]

    def _schedule(self, delay: float, message: RestartDue) -> None:
        ref = self.actor_ref
        self._timers = [t for t in self._timers if not t.cancelled]
        self._timers.append(self._clock.call_later(delay, lambda: tell_quietly(ref, message)))

    def _restart_due(self, message: RestartDue) -> None:
        if message.generation != self._generation:
            return
        for name in sorted(message.names, key=self._order.index):
            child = self._children[name]
            if child.ref is None:
                self._start_child(child)
        if message.crashed is not None:
            status = self._directory.status()[message.crashed]
            self._on_restarted(message.crashed, status["restarts"], str(status["last_error"]))

    def _restart_tree(self, reason: str) -> None:
        now = self._clock.monotonic()
        self._degraded = True
        if not self._tree_window.record(now):
            self._on_degraded(True)
            self._escalate_now(reason)
            return
        self._stop_all()
        for child in self._children.values():
            child.window.clear()
            child.attempt = 0
        delay = self._tree_backoff.delay(self._tree_attempt, self._rng)
        self._tree_attempt += 1
        self._last_tree_restart = now
        self._schedule(delay, RestartDue(tuple(self._order), self._generation, self._culprit))
        for name in self._order:
            self._directory._down(name, "restarting", retry_at=now + delay)
        self._on_degraded(True)  # after the states above, so status is consistent with it
        logger.error("restarting the whole tree in {:.2f}s: {}", delay, reason)
        ref = self.actor_ref
        self._timers.append(
            self._clock.call_later(
                self._tree_window.intensity.window_s,
                lambda: tell_quietly(ref, "clear_degraded"),
            )
        )

    def _maybe_clear_degraded(self) -> None:
        window = self._tree_window.intensity.window_s
        if self._degraded and self._clock.monotonic() - self._last_tree_restart >= window:
            self._degraded = False
            self._tree_attempt = 0
            self._on_degraded(False)

    def _escalate_now(self, reason: str) -> None:
        if self._escalated:
            return
        self._escalated = True
        logger.error("restart intensity of the tree exceeded; the gateway must exit: {}", reason)
        self._on_escalate(reason)


class SupervisorHandle:
    """The supervisor as other threads use it (blocking calls with timeouts)."""

    def __init__(self, ref: pykka.ActorRef[Supervisor]) -> None:
        self.ref = ref

    def start_all(self, *, timeout: float) -> bool:
        """Start every child; True if each one rehydrated (answered a query) within `timeout`.
        False if one crashed meanwhile: the supervisor restarts it after its backoff."""
        return bool(self.ref.ask(_StartAll(timeout), timeout=timeout * 2 + 5))

    def start_tree(
        self, directory: Directory, *, timeout: float, abandon: Callable[[], bool] = lambda: False
    ) -> bool:
        """Start every child and return True once the tree has started: every child the
        supervisor means to run is running and has rehydrated. A child that crashed while
        starting is waited for through its restart. False after `timeout`, or as soon as
        `abandon()` is true (wake `directory` to have it looked at)."""
        deadline = time.monotonic() + timeout
        if self.start_all(timeout=timeout):
            return True
        version = -1
        while True:
            left = deadline - time.monotonic()
            settled = directory.wait_settled(newer_than=version, timeout=left, abandon=abandon)
            if settled is None:
                return False
            version, refs = settled
            if all(_rehydrated(ref, deadline) for ref in refs.values()):
                return True
            # One died after all (its crash report is on its way): wait for the next change.

    def stop_all(self, *, timeout: float) -> None:
        self.ref.ask(_StopAll(), timeout=timeout)

    def inject_fault(self, name: str, *, fail_starts: int = 0, timeout: float = 5.0) -> bool:
        return bool(self.ref.ask(_InjectFault(name, fail_starts), timeout=timeout))

    def sync(self, *, timeout: float = 5.0) -> None:
        """Return once every message sent to the supervisor before this call was handled."""
        self.ref.ask("sync", timeout=timeout)

    def child_exited(
        self, name: str, incarnation: int, error: BaseException | None, tb: str
    ) -> None:
        tell_quietly(self.ref, ChildExited(name, incarnation, error, tb))

    def stop(self, *, timeout: float) -> None:
        try:
            self.ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            logger.error("the supervisor did not stop within {}s", timeout)


def _rehydrated(ref: pykka.ActorRef[Any], deadline: float) -> bool:
    """The actor answered a status query (it has run its start, rehydration included)."""
    try:
        answer = ref.ask(StatusQuery(), timeout=max(0.0, deadline - time.monotonic()))
    except (pykka.ActorDeadError, pykka.Timeout):
        return False
    return answer is not None  # a crashed actor answers nothing
