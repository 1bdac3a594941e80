"""The watcher: one thread that waits (epoll) on pidfds and pipes and tells the monitor.

The process monitor must learn that a runner ended (its end is then on disk), that its zygote
died, and what the zygote's pipe says, the moment it happens and without its own thread ever
waiting. A pidfd (`os.pidfd_open`, Linux 5.3+) becomes readable when its process exits, and it
names that very process even if the pid is reused later, so the watcher needs neither a tick nor
to be the parent. It tells its owner, through `tell` (a pykka `tell`), one message per thing:

    Line(token, data)    a JSON line read from a watched pipe (data: the decoded object)
    Closed(token)        the pipe reached EOF (every writer closed it)
    Exited(token)        the process behind a pidfd exited
    WatcherFailed(exc)   the thread itself failed (a bug): the owner crashes and restarts

Order: before it tells an `Exited`, the watcher reads every watched pipe, so a line a process
wrote before it exited (a runner's report) is always told before its exit.

Each watch is one-shot and owns its descriptor: the watcher closes it once told (EOF, exit)
or at `close()`. `exit_of` and `lines_of` may be called from any thread; after `close()` they
watch nothing.
"""

from __future__ import annotations

import json
import os
import select
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Closed", "Exited", "Line", "Watcher", "WatcherFailed"]

READ_SIZE = 65_536
_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Line:
    token: Hashable
    data: Any


@dataclass(frozen=True, slots=True)
class Closed:
    token: Hashable


@dataclass(frozen=True, slots=True)
class Exited:
    token: Hashable


@dataclass(frozen=True, slots=True)
class WatcherFailed:
    error: BaseException


@dataclass(slots=True)
class _Watch:
    token: Hashable
    lines: bool  # a pipe to read lines from; else a pidfd
    pending: bytes = field(default=b"")


class Watcher:
    """The thread and its epoll; `close()` stops the thread and closes every descriptor."""

    def __init__(self, tell: Callable[[Any], None], *, name: str) -> None:
        self._tell = tell
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._gone: list[Hashable] = []  # exits to tell that needed no pidfd
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"tek-{name}-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def exit_of(self, pid: int, token: Hashable) -> None:
        """Tell Exited(token) when process `pid` exits: at once (after the pipes are read, as
        for any exit) if there is no such process now, or it is a zombie already."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            with self._lock:
                if self._closing:
                    return  # closed: it tells nothing more
                self._gone.append(token)
                os.eventfd_write(self._wake, 1)
            return
        self._add(fd, _Watch(token, lines=False))

    def lines_of(self, fd: int, token: Hashable) -> None:
        """Tell Line(token, data) for each JSON line read from pipe `fd`, then Closed(token).
        The watcher owns `fd` from now on (it is made non-blocking)."""
        os.set_blocking(fd, False)
        self._add(fd, _Watch(token, lines=True))

    def close(self, *, timeout: float = _CLOSE_TIMEOUT_S) -> None:
        """Stop the thread (it tells nothing more) and close every descriptor. Idempotent."""
        with self._lock:
            if self._epoll.closed:
                return
            self._closing = True
        os.eventfd_write(self._wake, 1)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            watched, self._watches = self._watches, {}
        for fd in watched:
            os.close(fd)
        self._epoll.close()
        os.close(self._wake)

    def _add(self, fd: int, watch: _Watch) -> None:
        with self._lock:
            if self._closing:
                os.close(fd)
                return
            self._watches[fd] = watch
            self._epoll.register(fd, select.EPOLLIN)

    def _drop(self, fd: int) -> _Watch | None:
        with self._lock:
            watch = self._watches.pop(fd, None)
            if watch is not None:
                self._epoll.unregister(fd)
                os.close(fd)
        return watch

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                ready = self._epoll.poll()
                with self._lock:
                    if self._closing:
                        return
                    watches = dict(self._watches)
                    gone, self._gone = self._gone, []
                exits = []
                for fd, _ in ready:
                    watch = watches.get(fd)
                    if watch is None:
                        if fd == self._wake:
                            os.eventfd_read(self._wake)
                    elif watch.lines:
                        self._read(fd, watch)
                    else:
                        exits.append(fd)
                if exits or gone:
                    for fd, watch in watches.items():  # what was written before the exit first
                        if watch.lines:
                            self._read(fd, watch)
                    for fd in exits:
                        dropped = self._drop(fd)
                        if dropped is not None:
                            gone.append(dropped.token)
                    for token in gone:
                        self._tell(Exited(token))
        except BaseException as exc:  # a bug: the owner must not go on without its watcher
            self._tell(WatcherFailed(exc))

    def _read(self, fd: int, watch: _Watch) -> None:
        while True:
            with self._lock:  # only this thread drops a watch: once it is there, fd is ours
                if self._watches.get(fd) is not watch:
                    return
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            if not chunk:
                if self._drop(fd) is not None:
                    self._tell(Closed(watch.token))
                return
            *lines, watch.pending = (watch.pending + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    try:
                        data = json.loads(line)
                    except ValueError:
                        data = {"unreadable": line[:200].decode(errors="replace")}
                    self._tell(Line(watch.token, data))
