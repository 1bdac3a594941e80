"""The runner: starts one tool process detached from the gateway and records how it ended.

    python -I .../tek_actors/procs/runner.py DIR REPORT_FD

DIR holds `spec.json` ({"argv", "cwd", "env", "intent"}), written by the process monitor after
it journaled the intent to start it (runtime/effects.py). The runner forks
away from the monitor (so it is never the gateway's child: no zombie, nothing to reap) in a
session of its own (neither a `kill -9` of the gateway nor a signal to the gateway's group
reaches it), and starts the process in a new process group, with stdout and stderr appended to
`DIR/stdout.log` and `DIR/stderr.log`, writes `DIR/status.json` ({"pid", "pgid", "create_time",
"started_at"}), tells the monitor "ok PID" (or "error MESSAGE") on REPORT_FD, waits, and writes
`status.json` again with the end: `exit_code` or `signal`, and `ended_at`. Every write of
status.json is atomic and fsynced, so whatever reads it (a monitor that was down meanwhile)
sees a whole record.

Before it starts the process the runner *claims* the start: it creates `DIR/claim` with
O_EXCL, writing its pid. A monitor of a later boot that finds the intent without an outcome
makes the same claim: exactly one of them wins, so either the runner starts the process (and
status.json will say so) or it provably never will. The process's environment carries
TEK_EFFECT_ID (the intent's id), so it can be told apart from every other process even if its
runner was killed before it wrote status.json. The report to the monitor is best effort: a
monitor killed meanwhile must not take the runner (and the exit status) with it.

The standard library only, run by path (`-I`): it starts in milliseconds, where importing the
whole tek_actors package would take most of a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def write_status(folder: Path, status: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".status.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as out:
        json.dump(status, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / "status.json")
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
        btime = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


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


def report(fd: int, line: str) -> None:
    try:
        os.write(fd, line.encode())
        os.close(fd)
    except OSError:  # the monitor is gone (a gateway kill -9): its successor reads status.json
        pass


def main(folder: Path, report_fd: int) -> int:
    if os.fork() > 0:  # the monitor reaps this parent at once; the runner is nobody's child
        os._exit(0)
    spec = json.loads((folder / "spec.json").read_text())
    if not claim(folder, f"runner {os.getpid()}"):
        report(report_fd, "error the start was abandoned by the gateway\n")
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # a handler, not SIG_IGN: the child gets defaults
    out = open(folder / "stdout.log", "ab")  # noqa: SIM115 - held for the child's lifetime
    err = open(folder / "stderr.log", "ab")  # noqa: SIM115
    try:
        child = subprocess.Popen(
            spec["argv"],
            cwd=spec.get("cwd") or None,
            env={**spec["env"], "TEK_EFFECT_ID": spec.get("intent", "")},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            process_group=0,
            close_fds=True,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}"
        write_status(folder, {"error": message, "exit_code": code, "ended_at": time.time()})
        report(report_fd, f"error {message}\n")
        return code
    finally:
        out.close()
        err.close()
    started = {
        "pid": child.pid,
        "pgid": child.pid,
        "create_time": create_time(child.pid),
        "started_at": time.time(),
        "runner_pid": os.getpid(),
    }
    write_status(folder, started)
    report(report_fd, f"ok {child.pid}\n")
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
    end: dict[str, Any] = {**started, "ended_at": time.time()}
    if code < 0:
        end["signal"] = -code
        end["exit_code"] = None
    else:
        end["exit_code"] = code
        end["signal"] = None
    write_status(folder, end)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
