"""kill -9 of the real gateway process while tool processes run: every output line once, in
order, and every exit recorded, including one that happened while the gateway was down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tek_actors import Client
from tek_actors.testing import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PY = sys.executable
COUNT = 300
PRINTER = f"import time\nfor i in range(1, {COUNT + 1}):\n    print(i, flush=True)\n    time.sleep(0.01)\n"


def _until(client: Client, name: str, proc_id: str, at_least: int = 0) -> dict[str, Any]:
    """The next `name` event of `proc_id` (for proc.output: one reaching line `at_least`)."""
    while True:
        event = client.next_event(30)
        assert event is not None, f"no {name} for {proc_id}"
        data = event["data"]
        if event["event"] != name or data.get("id") != proc_id:
            continue
        if name != "proc.output" or data["lines"][-1]["n"] >= at_least:
            return dict(data)


def _all_lines(client: Client, proc_id: str) -> list[dict[str, Any]]:
    return list(client.call("procs.logs", {"id": proc_id, "limit": 10_000})["lines"])


def test_kill9_while_a_process_prints_loses_and_repeats_no_line(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    with gateway.client(timeout=30) as client:
        client.hello(topics=["proc.output"])
        proc = client.call("procs.start", {"argv": [PY, "-c", PRINTER]})
        _until(client, "proc.output", proc["id"], at_least=50)
        gateway.kill9()  # mid-output: the process goes on, detached
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            client.hello(since_seq=0, topics=["proc.exited"])
            exited = _until(client, "proc.exited", proc["id"])
            assert exited["exit_code"] == 0 and exited["state"] == "exited"
            lines = _all_lines(client, proc["id"])
            assert [line["n"] for line in lines] == list(range(1, COUNT + 1))
            assert [line["text"] for line in lines] == [str(i) for i in range(1, COUNT + 1)]
    finally:
        assert again.terminate() == 0


def test_a_process_that_ends_while_the_gateway_is_down_has_its_exit_recorded(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    with gateway.client(timeout=30) as client:
        script = "echo before; read _ < /dev/null; sleep 0.3; echo after; exit 7"
        proc = client.call("procs.start", {"argv": ["sh", "-c", script]})
        runner = client.call("procs.get", {"id": proc["id"]})["runner_pid"]
        gateway.kill9()
    psutil.Process(runner).wait(timeout=30)  # the runner recorded the end and left
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            record = client.call("procs.get", {"id": proc["id"]})
            assert record["state"] == "exited" and record["exit_code"] == 7
            assert [line["text"] for line in _all_lines(client, proc["id"])] == ["before", "after"]
    finally:
        assert again.terminate() == 0


def test_logs_follow_keeps_following_through_a_gateway_crash(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    with gateway.client(timeout=30) as client:
        proc = client.call("procs.start", {"argv": [PY, "-c", PRINTER]})
    follower = subprocess.Popen(
        [PY, "-m", "tek_actors", "--home", str(home), "procs", "logs", proc["id"], "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )
    again: GatewayProcess | None = None
    try:
        assert follower.stdout is not None
        seen = [follower.stdout.readline().strip() for _ in range(40)]
        gateway.kill9()
        again = GatewayProcess(home).start()
        seen += follower.stdout.read().split()  # the same buffered reader: nothing skipped
        assert follower.stderr is not None
        err = follower.stderr.read()
        assert follower.wait(30) == 0, err
        assert seen == [str(i) for i in range(1, COUNT + 1)]  # no gap, no line twice
        assert "exit code 0" in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        for pipe in (follower.stdout, follower.stderr):
            if pipe is not None:
                pipe.close()
        if again is not None:
            assert again.terminate() == 0
        else:
            gateway.kill9()
