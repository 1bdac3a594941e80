"""The threads session actors run on (sessions/_threads.py): a loop given runs once, on a kept
thread when one waits, never more threads kept waiting than asked, and `close` lets every loop
given run to its end and ends every thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial

import pytest

from tek_actors.sessions._threads import SessionThreads
from tests.waiting import until

TIMEOUT_S = 10.0


@pytest.fixture
def threads() -> Iterator[SessionThreads]:
    pool = SessionThreads(keep_idle=2)
    try:
        yield pool
    finally:
        pool.close(TIMEOUT_S)


def _loop(ran: list[tuple[str, int]], done: threading.Event) -> None:
    me = threading.current_thread()
    ran.append((me.name, me.ident or 0))
    done.set()


def _returned(pool: SessionThreads, waiting: int) -> bool:
    """The pool has `waiting` threads that are back and wait for a loop."""
    with pool._lock:
        return pool._idle == waiting


def test_a_loop_runs_once_under_its_name_and_the_next_one_reuses_the_thread(
    threads: SessionThreads,
) -> None:
    ran: list[tuple[str, int]] = []
    first, second = threading.Event(), threading.Event()
    threads.run("ModelSessionActor-a", lambda: _loop(ran, first))
    assert first.wait(TIMEOUT_S)
    until(lambda: _returned(threads, 1), "the thread is back")
    threads.run("ModelSessionActor-b", lambda: _loop(ran, second))
    assert second.wait(TIMEOUT_S)
    assert [name for name, _ in ran] == ["ModelSessionActor-a", "ModelSessionActor-b"]
    assert ran[0][1] == ran[1][1]  # the same thread, not a new one
    assert threads.size == 1


def test_loops_given_at_once_run_side_by_side_and_only_keep_idle_threads_stay() -> None:
    pool = SessionThreads(keep_idle=2)
    release = threading.Event()
    started = threading.Barrier(5, timeout=TIMEOUT_S)  # all five at once: five threads

    def held() -> None:
        started.wait()
        release.wait(TIMEOUT_S)

    try:
        for i in range(4):
            pool.run(f"ModelSessionActor-{i}", held)
        started.wait()
        assert pool.size == 4
        release.set()
        until(lambda: pool.size == 2 and _returned(pool, 2), "two kept, two ended")
    finally:
        release.set()
        pool.close(TIMEOUT_S)
    assert pool.size == 0


def test_close_runs_every_loop_given_and_then_refuses_more() -> None:
    pool = SessionThreads(keep_idle=1)
    ran: list[int] = []
    gate = threading.Event()

    def slow() -> None:
        gate.wait(TIMEOUT_S)
        ran.append(0)

    pool.run("ModelSessionActor-slow", slow)
    for i in range(1, 4):
        pool.run(f"ModelSessionActor-{i}", partial(ran.append, i))
    gate.set()
    pool.close(TIMEOUT_S)
    assert sorted(ran) == [0, 1, 2, 3]
    assert pool.size == 0
    with pytest.raises(RuntimeError):
        pool.run("ModelSessionActor-late", lambda: None)
