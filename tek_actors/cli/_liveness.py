"""Is the gateway that the home's connection file names alive? Asked before talking to it.

A gateway killed with SIGKILL leaves its connection file (and its socket file) behind, and a
ZeroMQ connect to a socket nobody listens on does not fail: it waits, so a request would only
end at its timeout, seconds later. The file records the gateway's pid and the moment that
process started (`create_time`, as psutil counts it); a pid that is gone, a zombie, or a process
that started at another moment (the pid was reused) is a dead gateway, known at once.

On Linux the start time is read from /proc, the way psutil computes `create_time` (boot time +
start ticks / clock ticks per second), without importing psutil: `tek ping` stays small
(tests/cli/test_cli_imports.py). Elsewhere psutil answers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["process_started_at", "stale_gateway"]

# /proc and psutil round the start to clock ticks the same way; a wider margin only matters
# for a pid reused within that second, which a kill and restart does not produce.
_SAME_PROCESS_S = 1.0


def process_started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), or None when it does not live: no
    such process, or a zombie (a killed gateway `tek chat` started stays its zombie until
    reaped). Never blocks, never raises."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else _psutil_started_at(pid)
    except OSError:
        return _psutil_started_at(pid)
    # Field 2, the command name, may hold spaces and ")": the fields that follow its last ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _psutil_started_at(pid: int) -> float | None:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def stale_gateway(info: dict[str, Any] | None) -> int | None:
    """The pid a connection file `info` names if that gateway is certainly dead (the process is
    gone, a zombie, or another process that reused the pid), else None (alive, or a file that
    does not say enough to tell: then the request itself finds out)."""
    pid = info.get("pid") if info else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    started = process_started_at(pid)
    if started is None:
        return pid
    recorded = info.get("create_time") if info else None
    if isinstance(recorded, (int, float)) and abs(started - recorded) > _SAME_PROCESS_S:
        return pid
    return None
