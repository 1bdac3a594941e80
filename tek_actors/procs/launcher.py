"""The monitor's side of the zygote (zygote.py): start it, hand it starts, reap and restart it.

One zygote per monitor incarnation, started when the monitor begins: its interpreter starts
(about 50 ms of CPU) while nothing waits for it, since a start written to its stdin waits in the
pipe. Its stdout (the forks and the runners' reports) and its exit are watched by the watcher
(watcher.py), under the tokens ("zygote", generation); the monitor gets them as messages. A
zygote that dies is restarted at once, up to RESTARTS; past that, `send` says there is none for
REOPEN_AFTER_S and the monitor starts through the old runner (spawn.launch) meanwhile.

Everything here runs on the monitor's thread and never blocks, except `close` (at most
_STOP_TIMEOUT_S, at a stop).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from tek_actors.procs.watcher import Watcher
from tek_actors.runtime import Clock, Intensity, RestartWindow

__all__ = ["REOPEN_AFTER_S", "RESTARTS", "ZYGOTE", "Launcher"]

ZYGOTE = Path(__file__).with_name("zygote.py")
RESTARTS = Intensity(max_restarts=3, window_s=60.0)
REOPEN_AFTER_S = 30.0
_STOP_TIMEOUT_S = 5.0


class Launcher:
    def __init__(self, watcher: Watcher, log_path: Path, clock: Clock, log: Any) -> None:
        """`log_path`: the zygotes' stderr (appended); `log`: the monitor's bound logger."""
        self.watcher = watcher
        self.log_path = log_path
        self.clock = clock
        self.log = log
        self.generation = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin = -1
        self._deaths = RestartWindow(RESTARTS)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def open(self, env: dict[str, str]) -> bool:
        """Start a zygote (the next generation) with environment `env`; False if it cannot
        be started (then `send` says so, and starts go through the old runner)."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-I", str(ZYGOTE)],
                    stdin=stdin_r,
                    stdout=out_w,
                    stderr=log,
                    env=env,
                    cwd=self.log_path.parent,
                    start_new_session=True,  # the gateway's terminal signals are not its own
                )
        except OSError as exc:
            self.log.warning("cannot start the process zygote ({}): the old runner it is", exc)
            for fd in (stdin_w, out_r):
                os.close(fd)
            return False
        finally:
            os.close(stdin_r)
            os.close(out_w)
        self.generation += 1
        self._proc, self._stdin = proc, stdin_w
        os.set_blocking(stdin_w, False)  # a zygote that stops reading never blocks the monitor
        token = ("zygote", self.generation)
        self.watcher.lines_of(out_r, token)
        self.watcher.exit_of(proc.pid, token)  # our child: its pid is its own until reaped
        self.log.debug("process zygote {} started (pid {})", self.generation, proc.pid)
        return True

    def send(self, folder: Path) -> int | None:
        """Hand the zygote the start in `folder`: the generation that took it, or None if
        there is no zygote to take it now."""
        if self._proc is None:
            return None
        line = json.dumps({"start": str(folder)}).encode() + b"\n"
        if len(line) > select.PIPE_BUF:
            return None  # only a write up to PIPE_BUF is whole or nothing
        try:
            os.write(self._stdin, line)
        except OSError as exc:  # gone (its exit is on the way) or not reading
            self.log.warning("the process zygote took no start ({})", exc)
            return None
        return self.generation

    def gone(self, generation: int) -> float | None:
        """Zygote `generation` exited: reap it. For the current one, the delay before the
        next may start (0.0: at once); None for an older one (already replaced)."""
        if generation != self.generation or self._proc is None:
            return None
        proc, self._proc = self._proc, None
        with contextlib.suppress(OSError):
            os.close(self._stdin)
        code = proc.wait()  # it exited (its pidfd said so): this does not wait
        again = self._deaths.record(self.clock.monotonic())
        self.log.warning(
            "the process zygote (pid {}) died with {}; {}",
            proc.pid,
            code,
            "restarting it" if again else f"the old runner for {REOPEN_AFTER_S:.0f} s",
        )
        return 0.0 if again else REOPEN_AFTER_S

    def close(self) -> None:
        """Close the zygote's stdin (it exits at EOF, once it has forked what it read) and
        reap it; KILL past _STOP_TIMEOUT_S. The runners it forked go on."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            os.close(self._stdin)
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
