"""The threads session actors run on: kept, not made anew for every activation.

A pykka actor gets a thread of its own, and a session past `limits.sessions_live` is activated
and passivated at every turn. A new thread for each (create, start, the start hand-off, exit)
costs more than the rest of an activation, so the SessionManager gives each session actor's
loop to one of these threads instead. A thread runs one actor's loop at a time, from its
`on_start` to the end of its teardown, exactly as pykka's own thread would, and then waits
for the next; past `keep_idle` waiting threads, one whose actor stopped ends instead.

`run` never blocks: a waiting thread takes the loop from a queue; when none waits, a new thread
is started by the pool's starter thread (starting a thread waits until it runs, which the
manager's mailbox must not). Everything is told, nothing is asked, so no lock is held while an
actor runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

__all__ = ["SessionThreads"]

_IDLE_NAME = "tek-session-idle"


class SessionThreads:
    """Thread-safe. The owner calls `close` once every actor it gave was asked to stop. The
    threads are daemons: a waiting one must not hold up the process's exit."""

    def __init__(self, *, keep_idle: int) -> None:
        self._keep_idle = keep_idle
        self._loops: queue.SimpleQueue[tuple[str, Callable[[], None]] | None] = queue.SimpleQueue()
        self._spawns: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that wait for a loop and are not promised one yet
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._starter = threading.Thread(
            target=self._start_threads, name="tek-session-starter", daemon=True
        )
        self._starter.start()

    @property
    def size(self) -> int:
        """How many threads the pool has now (running an actor or waiting for one)."""
        with self._lock:
            return len(self._threads)

    def run(self, name: str, loop: Callable[[], None]) -> None:
        """Run `loop` (an actor's whole life) on a pool thread named `name` meanwhile.
        Does not block. Raises RuntimeError once closed."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the session threads are closed")
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # that one is promised this loop
        self._loops.put((name, loop))
        if spawn:
            self._spawns.put(True)

    def _start_threads(self) -> None:
        while self._spawns.get():
            thread = threading.Thread(target=self._serve, name=_IDLE_NAME, daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve(self) -> None:
        me = threading.current_thread()
        while (item := self._loops.get()) is not None:
            me.name, loop = item
            try:
                loop()
            finally:
                me.name = _IDLE_NAME
            with self._lock:
                if self._closed or self._idle >= self._keep_idle:
                    self._threads.discard(me)
                    return
                self._idle += 1
        with self._lock:
            self._threads.discard(me)

    def close(self, timeout: float) -> None:
        """Let the loops given so far run to their end (their actors were asked to stop), end
        every thread and wait for them, `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
        self._spawns.put(False)
        self._starter.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for _ in threads:  # after every loop queued: those run first
            self._loops.put(None)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
