"""The `tek` command as a person and a script use it, against real gateway processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def tek(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )


def test_start_then_stop_leaves_nothing_behind(home: Path) -> None:
    started = tek(home, "--json", "gateway", "start")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pid = info["pid"]
    assert psutil.pid_exists(pid)
    run = home / "run"
    assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(run / "gateway.json").st_mode) == 0o600
    again = tek(home, "gateway", "start")
    assert again.returncode == 0 and "already running" in again.stdout
    ping = tek(home, "--json", "ping")
    assert ping.returncode == 0 and json.loads(ping.stdout)["boot_id"]
    status = tek(home, "gateway", "status")
    assert status.returncode == 0 and "running" in status.stdout and "retention" in status.stdout
    stopped = tek(home, "gateway", "stop")
    assert stopped.returncode == 0, stopped.stderr
    state = home / "state"
    assert (state / "gateway.out").read_text() == ""  # the daemon logs to its file only
    assert stat.S_IMODE(os.stat(state / "gateway.log").st_mode) == 0o600
    assert sorted(p.name for p in run.iterdir()) == []  # no socket, lock or connection file


def test_commands_say_clearly_when_no_gateway_runs(home: Path) -> None:
    for args in (["ping"], ["gateway", "status"], ["events"]):
        result = tek(home, *args)
        assert result.returncode == 3
        assert "no gateway is running" in result.stderr
    as_json = tek(home, "--json", "ping")
    assert json.loads(as_json.stdout)["error"]["code"] == "unavailable"
    assert tek(home, "gateway", "stop").returncode == 0  # nothing to stop is not an error


def test_bad_arguments_are_refused_with_usage(home: Path) -> None:
    result = tek(home, "events", "--since", "-4")
    assert result.returncode == 2 and "--since" in result.stderr
    result = tek(home, "gateway", "frobnicate")
    assert result.returncode == 2 and "No such command" in result.stderr


def test_events_restart_and_status_json(home: Path) -> None:
    assert tek(home, "gateway", "start").returncode == 0
    try:
        restarted = tek(home, "--json", "gateway", "restart", "--grace-ms", "500")
        assert restarted.returncode == 0, restarted.stderr
        boot = json.loads(restarted.stdout)["boot_id"]
        status = json.loads(tek(home, "--json", "gateway", "status").stdout)
        assert status["boot_id"] == boot and status["state"] == "running"
        assert status["actors"]["retention"]["restarts"] == 0
        events = tek(home, "--json", "events", "--since", "0")
        lines = [json.loads(line) for line in events.stdout.splitlines()]
        assert [e["seq"] for e in lines] == [1, 2]
        assert [e["event"] for e in lines] == ["gateway.started", "gateway.started"]
    finally:
        assert tek(home, "gateway", "stop").returncode == 0


def test_events_follow_keeps_going_through_a_restart(home: Path) -> None:
    import queue
    import threading

    from tek_actors.testing import GatewayProcess

    gateway = GatewayProcess(home).start()
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tek_actors",
            "--home",
            str(home),
            "--json",
            "events",
            "--since",
            "0",
            "--follow",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )
    assert follower.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout])
    reader.start()
    client = gateway.client()
    seen: list[dict[str, object]] = []
    try:
        client.call("probe.append", {"key": "before"})
        while len(seen) < 2:  # the follower is connected and has caught up
            seen.append(json.loads(lines.get(timeout=20)))
        assert tek(home, "gateway", "restart", "--grace-ms", "200").returncode == 0
        client.call("probe.append", {"key": "after"})
        while sum(isinstance(e["seq"], int) for e in seen) < 4:
            seen.append(json.loads(lines.get(timeout=20)))
    finally:
        follower.terminate()
        follower.wait(10)
        reader.join(10)  # it ends at the pipe's end of file
        follower.stdout.close()
        client.close()
        gateway.terminate()
    durable = [e for e in seen if isinstance(e["seq"], int)]
    assert [e["event"] for e in durable] == [
        "gateway.started",
        "probe.appended",
        "gateway.started",
        "probe.appended",
    ]
    assert [e["seq"] for e in durable] == [1, 2, 3, 4]
    assert "gateway.shutdown_imminent" in [e["event"] for e in seen]  # shown, never replayed
