"""The runner: starts one tool process detached from the gateway and records how it ended.

Two ways in, one logic (`run`):

    python -I .../tek_actors/procs/runner.py DIR REPORT_FD   the old entry: a fresh interpreter
    zygote.py, forked per start                             the usual one (no interpreter start)

DIR holds `spec.json` ({"argv", "cwd", "env", "intent"}), written by the process monitor after
it journaled the intent to start it (runtime/effects.py). The runner is never the gateway's
child (the old entry forks away; a zygote's child belongs to the zygote, which reaps it), runs in
a session of its own (neither a `kill -9` of the gateway or the zygote nor a signal to their
groups reaches it), and starts the process in a new process group, with stdout and stderr
appended to `DIR/stdout.log` and `DIR/stderr.log`, writes `DIR/status.json` ({"pid", "pgid",
"create_time", "started_at", "runner_pid"}), reports "ok PID" (or "error MESSAGE") to the
monitor, waits, tells the monitor the end (a zygote's runner: on its pipe), writes `status.json`
again with it (`exit_code` or `signal`, and `ended_at`), and only then exits: a monitor that
missed the end's line learns of it from the runner's exit (a pidfd), and finds it on disk.
Every write of status.json is atomic, so whatever reads it (a monitor that was down meanwhile)
sees a whole record, and fsynced: the end before the runner exits, the start just after it was
reported (the monitor journals the start durably before it answers anyway).

A start handed out before its intent is durable (the zygote's, see starts.py) has `"go": true`
in its spec: the runner reads the spec, then waits on the FIFO `DIR/go` until the monitor
writes "go" there, which it does only once the intent is durable. The gateway alone holds the
FIFO's write end, so a gateway that dies first (or a monitor that gives the start up) closes
it, and the runner exits having claimed nothing: the monitor's claim then settles the start as
never started. The effect starts only once its intent is durable, as always; the runner's
wake-up, the spec and the hand-off now overlap the intent's commit instead of following it.

Before it starts the process the runner *claims* the start: it creates `DIR/claim` with
O_EXCL, writing its pid. A monitor that finds the start without an outcome (a later boot, or
this one once the runner or its zygote died before reporting) makes the same claim: exactly
one of them wins, so either the runner starts the process (and status.json will say so) or it
provably never will. The process's environment carries TEK_EFFECT_ID (the intent's id), so it
can be told apart from every other process even if its runner was killed before it wrote
status.json. The report to the monitor is best effort: a monitor killed meanwhile must not take
the runner (and the exit status) with it.

The standard library only, run by path (`-I`): importing the whole tek_actors package would
take most of a second. Test kill points (`runner.ready`, `runner.claimed`, `runner.started`)
are read from the environment like runtime/killpoints.py's.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# How long a runner waits for its go (the gateway closing its end answers much sooner; this is
# only against a monitor that kept the FIFO open and forgot it).
GO_TIMEOUT_S = 60


def write_status(folder: Path, status: dict[str, Any], *, durable: bool = True) -> None:
    """Replace status.json atomically (temp file, rename); `durable`: fsynced, file and folder,
    before it returns. Not durable: `make_durable` later (what a reader sees is whole either
    way; only an OS crash could lose it meanwhile). The runner is the folder's one writer, so
    the temp file's name is fixed."""
    tmp = folder / ".status.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(status).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, folder / "status.json")
    if durable:
        _fsync_folder(folder)


def make_durable(folder: Path) -> None:
    """fsync status.json and its folder (after a `write_status(durable=False)`)."""
    fd = os.open(folder / "status.json", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_time(pid: int) -> float | None:
    """The process's start time as psutil reports it (Linux: from /proc/PID/stat), so the
    monitor can compare it with psutil.Process(pid).create_time()."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        btime = boot_time()
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


@functools.cache
def boot_time() -> float:
    """When the machine booted (constant until it boots again): read once per process (a
    zygote reads it before it forks, so its runners need not)."""
    return next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )


def claim(folder: Path, owner: str) -> bool:
    """Take the right to start this process (True), or learn that somebody already took it."""
    try:
        fd = os.open(folder / "claim", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, owner.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def wait_for_go(folder: Path) -> bool:
    """Wait until the monitor says the start's intent is durable: "go" on the FIFO `DIR/go`,
    whose write end only the gateway holds. EOF (the gateway died, or the monitor gave the start
    up: its intent was refused or it settled the start without us) or GO_TIMEOUT_S without a
    word: False, and the runner must start nothing. A blocking read, not select: on Linux a
    FIFO whose writer was there before the reader opened never polls as hung up."""
    kill_point("runner.ready")
    path = folder / "go"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never waits for a writer to open
    except OSError:
        return False
    try:
        os.set_blocking(fd, True)
        signal.signal(signal.SIGALRM, _give_up)
        signal.alarm(GO_TIMEOUT_S)
        try:
            given = os.read(fd, 16)
        except TimeoutError:
            given = b""
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
    finally:
        os.close(fd)
    if given != b"go\n":
        return False  # the FIFO stays: it marks a start that was never confirmed
    with contextlib.suppress(OSError):
        os.unlink(path)  # the folder keeps no FIFO that nobody will write again
    return True


def _give_up(signum: int, frame: Any) -> None:
    raise TimeoutError


def report(fd: int, line: str) -> None:
    try:
        os.write(fd, line.encode())
        os.close(fd)
    except OSError:  # the monitor is gone (a gateway kill -9): its successor reads status.json
        pass


def kill_point(name: str) -> None:
    """runtime/killpoints.py's kill_point, for a process that cannot import it."""
    if os.environ.get("TEK_TEST_KILL_AT") == name and os.environ.get("TEK_TEST_HOOKS") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


def spawn(argv: list[str], cwd: str | None, env: dict[str, str], out: int, err: int) -> int:
    """Start `argv` as subprocess.Popen would (the program looked up on `env`'s PATH, in
    `cwd`, stdin from /dev/null, stdout and stderr to `out` and `err`, in a new process group,
    with SIGPIPE and SIGXFSZ back to their defaults and no other descriptor inherited: Python
    opens them all close-on-exec), through posix_spawn, which costs a third of Popen's fork.
    Changes this process's working folder to `cwd`. Raises OSError as Popen does."""
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        program = found
    if cwd is not None:
        os.chdir(cwd)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        return os.posix_spawn(
            program,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ],
            setpgroup=0,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            setsigmask=(),
        )
    finally:
        os.close(null)


def run(
    folder: Path,
    tell: Callable[[str], None],
    ended: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Claim, start, record, `tell` the monitor "ok PID" or "error MESSAGE", wait, record the
    end (after `ended(end)`, if given: the monitor then need not wait for the end's fsyncs).
    Both are best effort. Returns the runner's exit code. Runs in the runner's own process."""
    spec = json.loads((folder / "spec.json").read_text())
    if spec.get("go") and not wait_for_go(folder):
        return 0  # never confirmed: nothing claimed, so the monitor's claim settles it
    if not claim(folder, f"runner {os.getpid()}"):
        tell("error the start was abandoned by the gateway")
        return 1
    kill_point("runner.claimed")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # a handler, not SIG_IGN: the child gets defaults
    logs = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    out = os.open(folder / "stdout.log", logs, 0o600)
    err = os.open(folder / "stderr.log", logs, 0o600)
    try:
        env = {**spec["env"], "TEK_EFFECT_ID": spec.get("intent", "")}
        pid = spawn(spec["argv"], spec.get("cwd") or None, env, out, err)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}"
        write_status(folder, {"error": message, "exit_code": code, "ended_at": time.time()})
        tell(f"error {message}")
        return code
    finally:
        os.close(out)
        os.close(err)
    started = {
        "pid": pid,
        "pgid": pid,
        "create_time": create_time(pid),
        "started_at": time.time(),
        "runner_pid": os.getpid(),
    }
    # Reported before it is fsynced: the monitor journals the start (durably) before it
    # answers, and a monitor that was down finds the file whole anyway; only an OS crash in
    # between could lose it, and then the claim (fsynced) still proves it was started.
    write_status(folder, started, durable=False)
    kill_point("runner.started")
    tell(f"ok {pid}")
    # A process that has ended already (a quick tool) is told at once: the end's record,
    # written durably below, replaces the start's anyway. Else the start's record is made
    # durable before the long wait.
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        make_durable(folder)
        done, status = os.waitpid(pid, 0)  # (PEP 475 retries EINTR)
    code = os.waitstatus_to_exitcode(status)
    end: dict[str, Any] = {**started, "ended_at": time.time()}
    if code < 0:
        end["signal"] = -code
        end["exit_code"] = None
    else:
        end["exit_code"] = code
        end["signal"] = None
    if ended is not None:
        ended(end)  # the monitor records it now; status.json is for a monitor that is down
    write_status(folder, end)
    return 0


def main(folder: Path, report_fd: int) -> int:
    """The old entry: a fresh interpreter, started by spawn.launch when no zygote is up."""
    if os.fork() > 0:  # the monitor reaps this parent at once; the runner is nobody's child
        os._exit(0)
    os.set_inheritable(report_fd, False)  # passed to us; the process must not hold it
    return run(folder, lambda line: report(report_fd, line + "\n"))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
