"""kill -9 of the real gateway process while tool processes run: every output line once, in
order, and every exit recorded, including one that happened while the gateway was down; and a
start cut short at each kill point of the start path (the gateway's, the zygote's, the
runner's), then the gateway killed as well, runs its process once or never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq

from tek_actors import Client
from tek_actors.testing import GatewayProcess
from tests.conformance.conformance_client import RawClient
from tests.procs.helpers import zygotes

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
        runner = psutil.Process(client.call("procs.get", {"id": proc["id"]})["runner_pid"])
        [zygote] = zygotes(gateway.pid)
        gateway.kill9()
    zygote.wait(timeout=30)  # it saw its stdin close, and left: nothing starts for a dead gateway
    runner.wait(timeout=30)  # the runner recorded the end and left
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


def _answer(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply without the id of the request it answers."""
    return {k: v for k, v in reply.items() if k != "re"}


@pytest.mark.parametrize(
    "point",
    [
        "procs.intended",  # the gateway dies: the intent is journaled, nothing handed out yet
        "procs.spawned",  # the gateway dies: the runner reported, nothing journaled yet
        "zygote.received",  # the zygote dies: it read the start and forked nothing
        "zygote.forked",  # the runner dies before its claim
        "runner.claimed",  # the runner dies after its claim, before the process started
        "runner.started",  # the runner dies after the start, before its report
    ],
)
def test_a_start_cut_short_anywhere_then_a_kill9_runs_its_process_once_or_never(
    home: Path, zctx: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    marker = home / "marker.txt"
    request = {"argv": ["sh", "-c", f"echo ran >> {marker}; echo done"]}
    monkeypatch.setenv("TEK_TEST_KILL_AT", point)
    doomed = GatewayProcess(home).start()
    client = RawClient(zctx, doomed.home.default_endpoint())
    while True:  # until the gateway takes it up (it may still say it is starting)
        envelope = client.envelope("procs.start", request, idem="start-1")
        client.send(envelope)
        first = client.recv_reply(envelope["id"], timeout=10)
        if first is None or first["ok"] or first["error"]["code"] != "unavailable":
            break
        client.recv_reply("never", timeout=first["error"]["retry_after_ms"] / 1000)
    doomed.kill9()  # dead already at a gateway point; at the others, killed with the start done
    client.socket.close(linger=0)
    monkeypatch.delenv("TEK_TEST_KILL_AT")

    gateway = GatewayProcess(home).start()
    try:
        client = RawClient(zctx, gateway.home.default_endpoint())
        again = _answer(client.request("procs.start", request, idem="start-1"))
        if first is not None:
            assert again == _answer(first)  # the first answer, whatever it was
        assert _answer(client.request("procs.start", request, idem="start-1")) == again
        if not again["ok"]:  # nobody can say whether it started: it never is again
            assert again["error"]["code"] == "conflict", again
            assert again["error"]["details"]["outcome"] == "unknown"
            assert point == "runner.claimed" and not marker.exists()
            client.socket.close(linger=0)
            return
        proc_id = again["result"]["id"]
        client.call("hello", {"client_id": "t", "since_seq": 0, "topics": ["proc.exited"]})
        while client.call("procs.get", {"id": proc_id})["state"] == "running":
            assert client.next_event(20) is not None
        assert marker.read_text() == "ran\n"  # once, wherever the start was cut short
        assert [p["id"] for p in client.call("procs.list", {})["items"]] == [proc_id]
        client.socket.close(linger=0)
    finally:
        assert gateway.terminate() == 0
