"""A gateway killed with SIGKILL is known at once (issue 15, 2): its connection file stays, but
`tek` checks the pid and start time it records before talking, and exits 3 saying so instead of
waiting for a request's timeout; `tek chat` says "gateway down, reconnecting…" while it is down
and "gateway back" once one serves again."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import psutil
import pytest

from tek_actors.cli._gateway_watch import DOWN
from tek_actors.cli._liveness import process_started_at, stale_gateway
from tek_actors.testing import GatewayProcess
from tests.cli.test_cli import tek
from tests.waiting import until

pytestmark = pytest.mark.slow


def test_start_time_is_psutils_and_a_zombie_or_a_gone_pid_is_dead() -> None:
    started = process_started_at(os.getpid())
    assert started is not None and abs(started - psutil.Process().create_time()) < 0.05
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        until(lambda: process_started_at(child.pid) is None, "the exited child counts as dead")
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE  # not reaped yet
    finally:
        child.wait()
    assert process_started_at(child.pid) is None  # reaped: no such process


def test_ping_and_status_know_a_killed_gateway_at_once(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    info = json.loads((home / "run" / "gateway.json").read_text())
    assert info["create_time"] == psutil.Process(gateway.pid).create_time()
    assert stale_gateway(info) is None
    gateway.kill9()
    assert (home / "run" / "gateway.json").exists()  # a kill leaves it behind
    said = f"not running (stale connection file from pid {gateway.pid})"
    # A timeout of an hour: only a check made before talking can end this within the run's 60 s.
    ping = tek(home, "ping", "--timeout", "3600", timeout=60)
    assert ping.returncode == 3 and said in ping.stderr, ping.stderr
    status = tek(home, "gateway", "status", timeout=60)
    assert status.returncode == 3 and said in status.stderr, status.stderr
    as_json = json.loads(tek(home, "ping", "--json", "--timeout", "3600").stdout)
    assert as_json["error"]["code"] == "unavailable"
    assert as_json["error"]["details"]["pid"] == gateway.pid
    restarted = tek(home, "gateway", "start")  # the stale file does not stop a new start
    assert restarted.returncode == 0 and "gateway started" in restarted.stdout, restarted.stderr
    try:
        assert tek(home, "ping").returncode == 0
    finally:
        assert tek(home, "gateway", "stop").returncode == 0


def test_a_pid_taken_by_another_process_is_not_the_gateway(home: Path) -> None:
    run = home / "run"
    run.mkdir(mode=0o700, parents=True)
    me = psutil.Process()
    fake = {
        "endpoint": f"ipc://{run}/gateway.sock",
        "pid": me.pid,  # alive, but it started long after the recorded gateway did
        "boot_id": "b-old",
        "protocol": 1,
        "started_at": me.create_time() - 3600,
        "create_time": me.create_time() - 3600,
        "auth": "none",
    }
    (run / "gateway.json").write_text(json.dumps(fake))
    ping = tek(home, "ping", "--timeout", "3600", timeout=60)
    assert ping.returncode == 3
    assert f"not running (stale connection file from pid {me.pid})" in ping.stderr


def _lines(stream: IO[str], readers: list[threading.Thread]) -> queue.Queue[str]:
    """The lines of `stream` as they come, read by a thread that ends at its end of file."""
    got: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            got.put(line)

    reader = threading.Thread(target=read, name="tek-test-reader", daemon=True)
    reader.start()
    readers.append(reader)
    return got


def _until_line(lines: queue.Queue[str], text: str) -> str:
    while True:
        line = lines.get(timeout=30)
        if text in line:
            return line


def test_chat_says_when_its_gateway_dies_and_when_it_is_back(home: Path) -> None:
    chat = subprocess.Popen(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )
    assert chat.stdin is not None and chat.stdout is not None and chat.stderr is not None
    readers: list[threading.Thread] = []
    out, err = _lines(chat.stdout, readers), _lines(chat.stderr, readers)
    try:
        chat.stdin.write("hello there\n")
        chat.stdin.flush()
        _until_line(out, "You said: hello there")
        _until_line(err, "[local]")
        pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        os.kill(pid, 9)  # chat started it: it stays chat's zombie, which is no gateway either
        # Said while the gateway is still down, with nothing typed: no request finds it out.
        _until_line(err, DOWN)
        assert tek(home, "gateway", "start").returncode == 0
        back = _until_line(err, "gateway back")
        assert str(pid) not in back
        chat.stdin.write("after the crash\n")
        chat.stdin.flush()
        _until_line(out, "You said: after the crash")
        chat.stdin.write("/quit\n")
        chat.stdin.flush()
        assert chat.wait(30) == 0
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
        for reader in readers:  # the process is gone: both reach their end of file
            reader.join(10)
        for pipe in (chat.stdin, chat.stdout, chat.stderr):
            pipe.close()
        tek(home, "gateway", "stop")
