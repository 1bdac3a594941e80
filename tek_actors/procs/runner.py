"""The runner: starts one tool process detached from the gateway and records how it ended.

    python -I .../tek_actors/procs/runner.py DIR REPORT_FD

DIR holds `spec.json` ({"argv", "cwd", "env"}), written by the process monitor. The runner forks
away from the monitor (so it is never the gateway's child: no zombie, nothing to reap) in a
session of its own (neither a `kill -9` of the gateway nor a signal to the gateway's group
reaches it), and starts the process in a new process group, with stdout and stderr appended to
`DIR/stdout.log` and `DIR/stderr.log`, writes `DIR/status.json` ({"pid", "pgid", "create_time",
"started_at"}), tells the monitor "ok PID" (or "error MESSAGE") on REPORT_FD, waits, and writes
`status.json` again with the end: `exit_code` or `signal`, and `ended_at`. Every write of
status.json is atomic and fsynced, so whatever reads it (a monitor that was down meanwhile)
sees a whole record.

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


def main(folder: Path, report_fd: int) -> int:
    if os.fork() > 0:  # the monitor reaps this parent at once; the runner is nobody's child
        os._exit(0)
    spec = json.loads((folder / "spec.json").read_text())
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # a handler, not SIG_IGN: the child gets defaults
    out = open(folder / "stdout.log", "ab")  # noqa: SIM115 - held for the child's lifetime
    err = open(folder / "stderr.log", "ab")  # noqa: SIM115
    try:
        child = subprocess.Popen(
            spec["argv"],
            cwd=spec.get("cwd") or None,
            env=spec["env"],
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
        os.write(report_fd, f"error {message}\n".encode())
        os.close(report_fd)
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
    os.write(report_fd, f"ok {child.pid}\n".encode())
    os.close(report_fd)
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
