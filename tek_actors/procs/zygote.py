"""The zygote: one small process that forks a runner per tool start, so no start pays for a
Python interpreter's start (about 50 ms) any more.

    python -I .../tek_actors/procs/zygote.py

The process monitor starts one per incarnation (launcher.py), off the critical path, and writes
it one JSON line per start on stdin: {"start": DIR}. The zygote keeps one *spare*: a child it
forked ahead of time, already in a session of its own, waiting on a pipe for a folder. A start
hands DIR to the spare, which becomes its runner (runner.py's `run`: the O_EXCL claim, the tool,
status.json, the report, the wait, the end), and the zygote forks the next spare while that
runs: the fork (about 1.5 ms before a child runs) is off the start's path. Forking is safe
because the zygote is single-threaded; it imports the standard library only, by path (`-I`),
like the runner always did. A spare that finds its pipe closed (the zygote is gone) exits.

On stdout, JSON lines, each one write of less than PIPE_BUF bytes, so lines written by the
zygote and by its runners on the same pipe never interleave:

    {"id": ID, "forked": RUNNER_PID}                      by the zygote, once it handed DIR
    {"id": ID, "report": "ok PID" | "error MESSAGE"}      by the runner (runner.py's report)
    {"id": ID, "end": {...}}                              by the runner, once the process ended

ID is the process folder's name. The end is what the runner then writes to status.json; the
monitor records it from the line at once, without waiting for the runner's fsyncs. After an
error report, or the end, the runner closes its copy of the pipe.

The zygote ignores SIGCHLD, so the kernel reaps the runners that end (a runner restores the
default before it starts the tool, whose exit status is what it waits for). It exits on stdin
EOF: the gateway closed it, or died; it starts nothing for a gateway that is gone (its parent
changed). Runners go on either way: they are in sessions of their own, and nothing they do
needs the zygote or the gateway.

Test kill points (with TEK_TEST_HOOKS=1): `zygote.received` (the zygote read a start and has
not handed it out), `zygote.forked` (the runner, given its folder, before its claim), and
runner.py's `runner.claimed` and `runner.started`. They fire on the zygote's first start only,
so a start asked again after one is not killed again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

REPORT_MAX = 1000  # characters of a report's message; the whole error is in status.json
READ_SIZE = 65_536


def _load_runner() -> ModuleType:
    """runner.py, by path: `-I` keeps the script's folder off sys.path, and importing the
    tek_actors package would cost what the zygote exists to save."""
    path = Path(__file__).with_name("runner.py")
    spec = importlib.util.spec_from_file_location("tek_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_line(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, json.dumps(message).encode() + b"\n")


class _Pipe:
    """A runner's copy of the zygote's stdout: its lines to the monitor, best effort."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any], *, last: bool) -> None:
        """Write one line; `last`: then close the pipe (nothing of the zygote's is kept)."""
        if self.fd < 0:
            return
        try:
            _write_line(self.fd, message)
        except OSError:  # the gateway is gone: its successor reads status.json
            last = True
        if last:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass


def _fork_spare(runner: ModuleType) -> tuple[int, int]:
    """Fork the runner of the next start ahead of it (a fork takes about 1.5 ms before the
    child runs; a spare waiting on a pipe wakes in a tenth of that): (its pid, the pipe that
    hands it its folder)."""
    hand_r, hand_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(hand_w)
        _spare(runner, hand_r)
    os.close(hand_r)
    return pid, hand_w


def _spare(runner: ModuleType, hand: int) -> NoReturn:
    """The forked child: waits for its folder, becomes its runner, and exits with the
    runner's code; never returns into the zygote's loop. EOF first: the zygote is gone, and
    so is any start for this spare."""
    code = 70
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a runner waits for its own child
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # off the zygote's stdin
        os.close(null)
        given = b""
        while not given.endswith(b"\n"):
            chunk = os.read(hand, READ_SIZE)
            if not chunk:
                os._exit(0)
            given += chunk
        os.close(hand)
        folder = given[:-1].decode()
        os.chdir(folder)  # where the old runner runs too (a relative program without cwd)
        pipe = _Pipe(os.dup(1))
        log = os.open(
            os.path.join(folder, "runner.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        os.dup2(log, 1)  # anything the runner prints goes to its log, never into the pipe
        os.dup2(log, 2)
        os.close(log)
        runner.kill_point("zygote.forked")
        proc_id = os.path.basename(folder)

        def tell(line: str) -> None:
            if len(line) > REPORT_MAX:
                line = line[:REPORT_MAX] + "…"
            pipe.send({"id": proc_id, "report": line}, last=not line.startswith("ok "))

        def ended(end: dict[str, Any]) -> None:
            pipe.send({"id": proc_id, "end": end}, last=True)

        code = runner.run(Path(folder), tell, ended)
    except BaseException:
        traceback.print_exc()  # into runner.log once fd 2 is there, else the zygote's log
    finally:
        os._exit(code)


def main() -> int:
    runner = _load_runner()
    runner.boot_time()  # read once here, inherited by every runner
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps runners that end
    parent = os.getppid()
    spare = _fork_spare(runner)
    pending = b""
    while True:
        chunk = os.read(0, READ_SIZE)
        if not chunk:
            return 0  # the monitor closed our stdin, or the gateway died (the spare sees EOF)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                folder = str(json.loads(line)["start"])
            except (ValueError, KeyError, TypeError):
                print(f"zygote: not a start: {line[:200]!r}", file=sys.stderr, flush=True)
                continue
            if os.getppid() != parent:
                return 0  # the gateway is gone: start nothing more for it
            runner.kill_point("zygote.received")
            for _ in range(2):  # a spare that died meanwhile (killed): a new one takes it
                pid, hand = spare
                try:
                    os.write(hand, folder.encode() + b"\n")
                    break
                except OSError:
                    spare = _fork_spare(runner)
                finally:
                    os.close(hand)
            os.environ.pop("TEK_TEST_KILL_AT", None)  # kill points: the first start only
            spare = _fork_spare(runner)
            try:
                _write_line(1, {"id": os.path.basename(folder), "forked": pid})
            except OSError:
                return 0  # nobody reads our reports: the gateway is gone


if __name__ == "__main__":
    sys.exit(main())
