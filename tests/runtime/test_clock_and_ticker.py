"""The clocks, and tickers as supervised children."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from tek_actors.runtime import (
    ActorContext,
    Backoff,
    ChildSpec,
    Directory,
    FakeClock,
    RealClock,
    StatusQuery,
    Supervisor,
    SupervisorHandle,
    Ticker,
)
from tek_actors.store import Journal


def test_fake_clock_fires_due_timers_in_order_and_skips_cancelled() -> None:
    clock = FakeClock()
    fired: list[str] = []
    clock.call_later(2, lambda: fired.append("b"))
    clock.call_later(1, lambda: fired.append("a"))
    clock.call_later(1.5, lambda: fired.append("x")).cancel()
    clock.advance(1.9)
    assert fired == ["a"]
    clock.advance(0.1)
    assert fired == ["a", "b"]
    assert clock.pending() == 0


def test_real_clock_runs_timers_on_its_thread_and_closes() -> None:
    clock = RealClock()
    fired = threading.Event()
    cancelled = threading.Event()
    clock.call_later(10, cancelled.set).cancel()
    clock.call_later(0.01, fired.set)
    assert fired.wait(5)
    clock.close()
    assert not cancelled.is_set()


class FlakyTicker(Ticker):
    interval_s = 1.0
    ticked: ClassVar[list[int]] = []

    def tick(self) -> None:
        FlakyTicker.ticked.append(self.ctx.incarnation)
        if self.ctx.incarnation == 1 and self.ticks == 2:
            raise RuntimeError("tick failed")


def test_a_failing_tick_is_a_crash_and_the_ticker_restarts(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.db", boot_id="t").open()
    directory = Directory()
    handle: list[SupervisorHandle] = []

    def context(name: str, incarnation: int, options: dict[str, Any]) -> ActorContext:
        return ActorContext(
            name, incarnation, journal, clock, lambda n, d: None, handle[0].child_exited, options
        )

    ref = Supervisor.start(
        [ChildSpec("ticker", FlakyTicker, backoff=Backoff(0.5, 30, 2, 0))],
        clock=clock,
        directory=directory,
        make_context=context,
    )
    handle.append(SupervisorHandle(ref))
    try:
        assert handle[0].start_all(timeout=5)
        first = directory.lookup("ticker")
        clock.advance(1.0)
        assert first.ask(StatusQuery(), timeout=5)["ticks"] == 1  # handled, next tick armed
        clock.advance(1.0)  # second tick raises
        assert first.actor_stopped.wait(5)
        handle[0].sync()
        assert directory.status()["ticker"]["restarts"] == 1
        clock.advance(0.5)
        handle[0].sync()
        second = directory.lookup("ticker")
        assert second is not None and second is not first
        second.ask(StatusQuery(), timeout=5)  # started and armed
        clock.advance(1.0)
        assert second.ask(StatusQuery(), timeout=5)["ticks"] == 1
        assert FlakyTicker.ticked == [1, 1, 2]
    finally:
        handle[0].stop_all(timeout=5)
        handle[0].stop(timeout=5)
        journal.close()
