"""Injected time: wall clock, monotonic clock and timers.

Everything that waits (backoff, restart windows, tickers, expiry) asks a `Clock`, so tests drive
it with `FakeClock.advance()` instead of sleeping. Timer callbacks run on the clock's thread
(`RealClock`) or on the thread that calls `advance()` (`FakeClock`); they must be quick, and
usually just `tell` an actor.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import threading
import time
from collections.abc import Callable

from loguru import logger

__all__ = ["Clock", "FakeClock", "RealClock", "Timer"]


def _nothing() -> None:
    pass


class Timer:
    """A scheduled callback; `cancel()` is idempotent and thread-safe."""

    __slots__ = ("_callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # A cancelled timer stays in the clock's heap until it falls due: let go of what its
        # callback holds now (a passivated session actor, a request's ticket), not then.
        self._callback = _nothing

    def _fire(self) -> None:
        callback = self._callback
        if self.cancelled:
            return
        self.cancelled = True
        try:
            callback()
        except Exception:
            logger.opt(exception=True).error("timer callback failed")


class Clock(abc.ABC):
    """The interface: `time()` (wall, for records), `monotonic()` (for intervals), timers."""

    @abc.abstractmethod
    def time(self) -> float: ...

    @abc.abstractmethod
    def monotonic(self) -> float: ...

    @abc.abstractmethod
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """`callback` at monotonic time `when` (at once if it is past). Unlike a delay, an
        absolute time does not drift if the clock moves between reading it and arming."""
        return self.call_later(when - self.monotonic(), callback)

    def close(self) -> None:  # noqa: B027 - optional: a clock without a thread has nothing to stop
        """Stop the clock's thread, if it has one; pending timers are dropped."""


class _Heap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._counter = itertools.count()

    def push(self, timer: Timer) -> None:
        heapq.heappush(self._heap, (timer.due, next(self._counter), timer))

    def pop_due(self, now: float) -> list[Timer]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def next_due(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None


class RealClock(Clock):
    """System time; timers run on one daemon thread started on the first `call_later`."""

    def __init__(self) -> None:
        self._heap = _Heap()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self._cond:
            if self._closed:
                timer.cancel()
                return timer
            self._heap.push(timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tek-clock", daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    due = self._heap.next_due()
                    now = time.monotonic()
                    if due is not None and due <= now:
                        break
                    self._cond.wait(None if due is None else due - now)
                if self._closed:
                    return
                timers = self._heap.pop_due(time.monotonic())
            for timer in timers:
                timer._fire()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)


class FakeClock(Clock):
    """Time that moves only when a test calls `advance()`; due timers fire in that call."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._heap = _Heap()
        self._lock = threading.Lock()
        self._armed = threading.Condition(self._lock)

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        with self._lock:
            timer = Timer(self._mono + max(0.0, delay), callback)
            self._heap.push(timer)
            self._armed.notify_all()
        return timer

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        with self._lock:
            timer = Timer(when, callback)
            past = when <= self._mono
            if not past:
                self._heap.push(timer)
                self._armed.notify_all()
        if past:
            timer._fire()
        return timer

    def pending(self) -> int:
        """How many timers are waiting (cancelled ones excluded)."""
        with self._lock:
            return self._pending()

    def _pending(self) -> int:
        return sum(1 for _, _, t in self._heap._heap if not t.cancelled)

    def wait_for_pending(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least `count` timers wait (another thread armed one); False on
        timeout. How a test knows an actor has scheduled the timer it is about to advance."""
        with self._armed:
            return self._armed.wait_for(lambda: self._pending() >= count, timeout)

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due, in order of due time."""
        with self._lock:
            target = self._mono + seconds
        while True:
            with self._lock:
                due = self._heap.next_due()
                if due is None or due > target:
                    self._now += target - self._mono
                    self._mono = target
                    return
                self._now += due - self._mono
                self._mono = due
                timers = self._heap.pop_due(due)
            for timer in timers:
                timer._fire()
