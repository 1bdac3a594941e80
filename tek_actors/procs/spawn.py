"""Starting a process through the old runner, and what the world says of a start afterwards.

The monitor (starts.py) hands a start to its zygote, whose runner waits for the go the
monitor gives once the start's intent is durable, or journals the intent and then calls
`launch` when there is no zygote; a start whose runner never reported (a kill -9 of the
gateway in between, a runner or zygote that died, a hung runner) is settled from the world with
`settle_from_world`: the runner's O_EXCL claim, status.json, and the environment variable
TEK_EFFECT_ID every process it starts carries (runner.py). Everything here runs on the
monitor's thread and blocks at most START_TIMEOUT_S.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import psutil

from tek_actors.errors import InvalidValue
from tek_actors.procs.runner import claim

__all__ = [
    "START_TIMEOUT_S",
    "check_program",
    "is_alive",
    "launch",
    "read_status",
    "scrubbed_environment",
    "settle_from_world",
]

RUNNER = Path(__file__).with_name("runner.py")
START_TIMEOUT_S = 10.0
_SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "PASSWORD", "_PASSWORD")

Found = Literal["started", "not_started", "failed", "unknown"]


def is_alive(pid: int, create_time: float | None) -> bool:
    """The very process that was started (pid and start time), alive and not a zombie."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return False  # the pid now belongs to another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def read_status(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def scrubbed_environment(extra: dict[str, str] | None, secret_env: set[str]) -> dict[str, str]:
    """The gateway's environment without its secrets, plus what the caller gave."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TEK_")
        and k not in secret_env
        and not k.upper().endswith(_SECRET_SUFFIXES)
    }
    env.update(extra or {})
    return env


def check_program(program: str, env: dict[str, str], cwd: str | None) -> None:
    """InvalidValue unless `program` is an executable file or on the PATH."""
    if "/" in program:
        path = Path(cwd or ".", program) if not program.startswith("/") else Path(program)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InvalidValue(
                f"{program!r} is not an executable file",
                details={"path": "argv.0", "expected": "an executable program"},
            )
        return
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise InvalidValue(
            f"no program {program!r} on the PATH",
            details={"path": "argv.0", "expected": "a program on the PATH"},
        )


def launch(folder: Path) -> str | None:
    """Start the old runner (a fresh interpreter: about 50 ms) and wait for its report; None
    if none came (then only the claim can tell whether the process started). The fallback for
    when the zygote (zygote.py) is down, and for a start tried a second time."""
    read_fd, write_fd = os.pipe()
    try:
        with open(folder / "runner.log", "wb") as log:
            runner = subprocess.Popen(
                [sys.executable, "-I", str(RUNNER), str(folder), str(write_fd)],
                # the old runner is the fallback, never a test's target: no kill points in it
                env={k: v for k, v in os.environ.items() if k != "TEK_TEST_KILL_AT"},
                pass_fds=(write_fd,),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=folder,
            )
        os.close(write_fd)
        write_fd = -1
        runner.wait(START_TIMEOUT_S)  # it forks the real runner and exits at once
        ready, _, _ = select.select([read_fd], [], [], START_TIMEOUT_S)
        report = os.read(read_fd, 65_536).decode(errors="replace").strip() if ready else ""
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    return report if report.startswith(("ok ", "error ")) else None


def settle_from_world(folder: Path, intent_id: str, owner: str) -> tuple[Found, dict[str, Any]]:
    """How a start whose runner never reported went, from what the world shows: `started`
    with its status (pid, pgid, create_time, ...), `not_started` (no folder, or `owner` won the
    claim, so the runner never will start it), `failed` with the runner's error, or `unknown`
    with the reason (a runner that claimed the start and died before saying)."""
    if not folder.is_dir() or claim(folder, owner):
        shutil.rmtree(folder, ignore_errors=True)  # the runner never started it, and now won't
        return "not_started", {"reason": "the gateway stopped before the process was started"}
    status = _status_of_claimed(folder)
    if "pid" in status:
        return "started", status
    if "error" in status:
        return "failed", {"error": status["error"]}
    found = _find_by_effect(intent_id)
    if found is not None:
        return "started", found
    why = "its runner claimed the start and died before saying whether the process started"
    return "unknown", {"reason": why}


def _status_of_claimed(folder: Path) -> dict[str, Any]:
    """status.json of a start the runner claimed; while the runner lives and has not
    written it yet (milliseconds), wait for it, at most START_TIMEOUT_S."""
    owner = (folder / "claim").read_text(errors="replace").split()
    runner_pid = int(owner[1]) if len(owner) == 2 and owner[1].isdigit() else None
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        status = read_status(folder)
        if status or runner_pid is None or not is_alive(runner_pid, None):
            return status or read_status(folder)
        if time.monotonic() > deadline:
            return status
        time.sleep(0.005)  # a blocking wait on another process's file: it has no event


def _find_by_effect(intent_id: str) -> dict[str, Any] | None:
    """The live process started for `intent_id` (its environment says so), as a status."""
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if proc.environ().get("TEK_EFFECT_ID") != intent_id:
                continue
            pgid = os.getpgid(proc.pid)
        except (psutil.Error, OSError):
            continue
        created = proc.info["create_time"]
        return {"pid": proc.pid, "pgid": pgid, "create_time": created, "started_at": created}
    return None
