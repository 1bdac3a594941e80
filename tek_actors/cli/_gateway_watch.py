"""`tek chat` says at once when its gateway dies, and when one serves again.

The Client finds a dead gateway only by its silence (`silence_s` with no frame), and a person
waiting at `you>` sends nothing that would find out. The home's connection file names the
gateway's pid and start time (`_liveness`); a killed gateway leaves it behind, a new one rewrites
it once it serves. So a thread reads both a few times a second and says "gateway down,
reconnecting…" when the process is gone and "gateway back" when the file names a live one again;
the Client itself reconnects and resyncs (nothing is lost or shown twice).

A gateway on an explicit `--endpoint` (maybe another machine) has no process here to watch: then
nothing is said, and the Client's reconnect is what there is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import click

from tek_actors.cli._liveness import stale_gateway
from tek_actors.home import TekHome

__all__ = ["DOWN", "GatewayWatch"]

DOWN = "gateway down, reconnecting…"
_INTERVAL_S = 0.2  # a death is said well within the 2 s docs/operations.md promises


class GatewayWatch:
    """`with GatewayWatch(home, say=console.notice):` around a conversation. Its daemon thread
    only reads files and hands a line to `say` (default: stderr), which must be safe to call
    from another thread (the chat's console puts it above the line being typed); it is stopped
    and joined on exit."""

    def __init__(
        self,
        home: TekHome,
        *,
        say: Callable[[str], None] | None = None,
        interval: float = _INTERVAL_S,
    ) -> None:
        self._home = home
        self._say = say or (lambda line: click.echo(line, err=True))
        self._interval = interval
        self._stop = threading.Event()
        self._up = self._alive() is not None
        self._thread = threading.Thread(target=self._run, name="tek-chat-watch", daemon=True)

    def __enter__(self) -> GatewayWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _alive(self) -> int | None:
        """The pid of the live gateway the connection file names, or None."""
        info = self._home.read_connection()
        pid = info.get("pid") if info else None
        if not isinstance(pid, int) or stale_gateway(info) is not None:
            return None
        return pid

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            pid = self._alive()
            if self._up and pid is None:
                self._say(DOWN)
            elif not self._up and pid is not None:
                self._say(f"gateway back (pid {pid})")
            self._up = pid is not None
