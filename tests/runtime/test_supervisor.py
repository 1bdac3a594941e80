"""Supervision: crashes are caught on every pykka path, restarted with backoff, rehydrated,
counted, and escalated past the intensity. Time is a FakeClock: no test sleeps."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tek_actors.errors import Internal, NotFound
from tek_actors.runtime import (
    ActorContext,
    Backoff,
    ChildSpec,
    Directory,
    FakeClock,
    Strategy,
    Supervisor,
    SupervisorHandle,
)
from tek_actors.store import Journal
from tests.runtime.conftest import CounterActor


def test_domain_errors_are_replies_and_the_actor_keeps_its_state(make_tree: Any) -> None:
    tree = make_tree()
    assert tree.ask("counter", "counter.add", {"n": 5}) == (True, {"total": 5})
    ok, error = tree.ask("counter", "counter.add", {"n": 0})
    assert not ok and isinstance(error, NotFound)
    ok, error = tree.ask("counter", "counter.add", {"n": "x"})
    assert not ok and error.code == "invalid_request" and error.details["field"] == "payload.n"
    assert tree.ask("counter", "counter.get")[1]["total"] == 5
    assert tree.directory.status()["counter"]["restarts"] == 0


def test_a_bug_in_a_request_is_a_crash_then_restart_and_rehydration(make_tree: Any) -> None:
    tree = make_tree()
    tree.ask("counter", "counter.add", {"n": 2})
    tree.ask("counter", "counter.add", {"n": 3})
    old = tree.directory.lookup("counter")
    ok, error = tree.ask("counter", "counter.add", {"n": -1})
    assert not ok and isinstance(error, Internal)
    assert old.actor_stopped.wait(5)
    tree.handle.sync()
    assert tree.directory.lookup("counter") is None
    assert tree.directory.status()["counter"]["state"] == "restarting"
    assert "ZeroDivisionError" in tree.directory.status()["counter"]["last_error"]
    assert tree.down == ["counter"]
    tree.settle(0.4)  # backoff is 0.5 s: not yet
    assert tree.directory.lookup("counter") is None
    tree.settle(0.2)
    assert tree.directory.lookup("counter") is not None
    assert tree.ask("counter", "counter.get")[1]["total"] == 5  # rehydrated
    assert tree.restarted == [("counter", 1, tree.directory.status()["counter"]["last_error"])]


def test_a_crash_on_the_tell_path_and_in_on_start_are_both_caught(make_tree: Any) -> None:
    tree = make_tree()
    tree.ask("counter", "counter.add", {"n": 7})
    first = tree.directory.lookup("counter")
    assert tree.handle.inject_fault("counter", fail_starts=1)  # crash now, and once at start
    assert first.actor_stopped.wait(5)
    tree.handle.sync()
    tree.settle(0.5)  # restart 1 fails in on_start
    tree.wait_down(2)
    status = tree.directory.status()["counter"]
    assert status["restarts"] == 2 and "injected start failure" in status["last_error"]
    tree.settle(1.0)  # second backoff doubles to 1 s
    assert tree.ask("counter", "counter.get")[1]["total"] == 7


def test_system_exit_inside_an_actor_stops_only_that_actor(make_tree: Any) -> None:
    tree = make_tree()
    counter = tree.directory.lookup("counter")
    ok, _ = tree.ask("counter", "counter.add", {"n": 999})
    assert not ok
    # The answer leaves before the crash report: the report is only certain once it stopped.
    assert counter.actor_stopped.wait(5)
    tree.crash("other")  # the other actor and the supervisor are still alive and working
    assert tree.directory.status()["counter"]["restarts"] == 1
    tree.settle(0.5)
    assert tree.ask("counter", "counter.get")[0] is True


def test_rest_for_one_restarts_the_children_started_after(make_tree: Any) -> None:
    tree = make_tree(Strategy.REST_FOR_ONE)
    other_before = tree.directory.lookup("other")
    tree.crash("counter")
    assert tree.directory.lookup("other") is None  # stopped with it
    tree.settle(0.5)
    assert tree.directory.lookup("other") not in (None, other_before)
    assert tree.directory.status()["other"]["restarts"] == 0  # stopped cleanly, not crashed


def test_one_for_one_leaves_the_others_alone(make_tree: Any) -> None:
    tree = make_tree(Strategy.ONE_FOR_ONE)
    other = tree.directory.lookup("other")
    tree.crash("counter")
    assert tree.directory.lookup("other") is other


def test_backoff_doubles_and_intensity_escalates_to_a_tree_restart(make_tree: Any) -> None:
    tree = make_tree(max_restarts=2, tree_max=1)
    tree.ask("counter", "counter.add", {"n": 4})
    tree.crash("counter")
    tree.settle(0.5)
    tree.crash("counter")
    tree.settle(0.9)
    assert tree.directory.lookup("counter") is None  # second backoff is 1 s
    tree.settle(0.1)
    tree.crash("counter")  # the third restart in the window exceeds max_restarts=2
    assert tree.degraded == [True]
    assert not tree.escalated.is_set()
    assert tree.directory.lookup("other") is None  # the whole tree is restarting
    tree.settle(1.0)
    assert tree.ask("counter", "counter.get")[1]["total"] == 4
    tree.crash("counter")
    tree.settle(0.5)
    tree.crash("counter")
    tree.settle(1.0)
    tree.crash("counter")  # exceeds again: a second tree restart inside 60 s escalates
    assert tree.escalated.wait(5)


def test_degraded_clears_after_a_quiet_window(make_tree: Any) -> None:
    tree = make_tree(max_restarts=0, tree_max=3)
    tree.crash("counter")
    assert tree.degraded == [True]
    tree.settle(1.0)
    tree.settle(60.0)
    assert tree.degraded == [True, False]


class FailsItsFirstStart(CounterActor):
    """Its first incarnation crashes in on_start (where rehydration runs); the next ones start."""

    def on_begin(self) -> None:
        starts: list[int] = self.ctx.options["starts"]
        starts.append(self.ctx.incarnation)
        if len(starts) == 1:
            raise RuntimeError("the first start fails")
        super().on_begin()


def _tree(tmp_path: Path, starts: list[int]) -> tuple[Any, ...]:
    clock, directory = FakeClock(), Directory()
    journal = Journal(tmp_path / "j.db", boot_id="t").open()
    handle: list[SupervisorHandle] = []
    down = threading.Event()

    def context(name: str, incarnation: int, options: dict[str, Any]) -> ActorContext:
        return ActorContext(
            name, incarnation, journal, clock, lambda n, d: None, handle[0].child_exited, options
        )

    specs = [
        ChildSpec("counter", CounterActor),
        ChildSpec(
            "flaky",
            FailsItsFirstStart,
            options={"starts": starts},
            backoff=Backoff(0.5, 30.0, 2.0, 0.0),
        ),
    ]
    ref = Supervisor.start(
        specs,
        clock=clock,
        directory=directory,
        make_context=context,
        on_child_down=lambda name: down.set(),
    )
    handle.append(SupervisorHandle(ref))
    return clock, directory, journal, handle[0], down


def test_start_tree_returns_once_a_child_that_crashed_while_starting_is_back(
    tmp_path: Path,
) -> None:
    starts: list[int] = []
    clock, directory, journal, handle, down = _tree(tmp_path, starts)
    answer: list[bool] = []
    starter = threading.Thread(
        target=lambda: answer.append(handle.start_tree(directory, timeout=30))
    )
    try:
        starter.start()
        assert down.wait(10)  # the first start crashed
        handle.sync()  # its restart timer is armed (the clock has not moved: it cannot be back)
        assert directory.state_of("flaky") == "restarting" and answer == []
        clock.advance(0.5)  # its backoff
        starter.join(30)
        assert answer == [True] and starts == [1, 2]
        assert directory.state_of("flaky") == directory.state_of("counter") == "running"
    finally:
        starter.join(30)
        handle.stop_all(timeout=10)
        handle.stop(timeout=10)
        journal.close()


def test_start_tree_gives_up_when_told_to(tmp_path: Path) -> None:
    starts: list[int] = []
    _, directory, journal, handle, down = _tree(tmp_path, starts)
    fatal = threading.Event()
    answer: list[bool] = []
    starter = threading.Thread(
        target=lambda: answer.append(handle.start_tree(directory, timeout=30, abandon=fatal.is_set))
    )
    try:
        starter.start()
        assert down.wait(10)
        fatal.set()  # e.g. the journal failed: nobody will wait for the restart
        directory.wake()
        starter.join(30)
        assert answer == [False] and starts == [1]
    finally:
        starter.join(30)
        handle.stop_all(timeout=10)
        handle.stop(timeout=10)
        journal.close()
