"""kill -9 of the real gateway at each point of a tool call's life: the tool's side effect
happens the right number of times (0 or 1) and the approval's state is right after restart.

The test plays the session's part: request, (a person decides), begin (durably running before
the tool starts), start the tool's process, attach it, finish. After a restart it tries to run
the call again, as a session that lost its memory would, and must be refused."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Conflict, Gateway
from tek_actors.testing import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _request(client: Client, call: str, marker: Path) -> dict[str, Any]:
    payload = {
        "session": "s1",
        "tool_call": call,
        "tool": "shell",
        "arguments": {"argv": ["sh", "-c", f"echo ran >> {marker}; sleep 0.5"]},
    }
    result: dict[str, Any] = client.call("approvals.request", payload)
    return result


def _begin(client: Client, item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = client.call(
        "approvals.begin", {"id": item["id"], "policy_version": item["current_policy_version"]}
    )
    return result


def _start_tool(client: Client, item: dict[str, Any]) -> str:
    proc = client.call("procs.start", {"argv": item["arguments"]["argv"], "tool_call": item["id"]})
    client.call("approvals.attach", {"id": item["id"], "proc_id": proc["id"]})
    return str(proc["id"])


def _run_to_end(client: Client, item: dict[str, Any]) -> None:
    """The session's whole path for an approved call."""
    assert _begin(client, item)["status"] == "running"
    proc_id = _start_tool(client, item)
    client.hello(since_seq=0, topics=["proc.exited"])
    while True:
        event = client.next_event(20)
        assert event is not None
        if event["event"] == "proc.exited" and event["data"].get("id") == proc_id:
            break
    client.call(
        "approvals.finish",
        {
            "id": item["id"],
            "outcome": "executed",
            "result": {"exit_code": event["data"]["exit_code"]},
        },
    )


def _wait_status(client: Client, item_id: str, status: str) -> dict[str, Any]:
    client.hello(since_seq=0, topics=["approval.*"])
    while True:
        current = client.call("approvals.get", {"id": item_id})
        if current["status"] == status:
            return dict(current)
        event = client.next_event(20)
        assert event is not None, f"{item_id} stayed {current['status']}, expected {status}"


def _runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_kill9_at_every_point_of_a_tool_call(home: Path) -> None:
    def restarted(gateway: GatewayProcess) -> GatewayProcess:
        gateway.kill9()
        return GatewayProcess(home).start()

    gateway = GatewayProcess(home).start()
    client = gateway.client(timeout=30)
    try:
        # (a) pending when the gateway dies: still pending, and runs once after a decision
        a = _request(client, "a", home / "a.txt")
        gateway = restarted(gateway)
        client.close()
        client = gateway.client(timeout=30)
        assert client.call("approvals.get", {"id": a["id"]})["status"] == "pending"
        client.call("approvals.decide", {"id": a["id"], "decision": "approve"})
        _run_to_end(client, client.call("approvals.get", {"id": a["id"]}))
        assert _runs(home / "a.txt") == 1

        # (b) approved but not started: not lost, runs once after the restart
        b = _request(client, "b", home / "b.txt")
        client.call("approvals.decide", {"id": b["id"], "decision": "approve"})
        gateway = restarted(gateway)
        client.close()
        client = gateway.client(timeout=30)
        b = client.call("approvals.get", {"id": b["id"]})
        assert b["status"] == "approved"
        _run_to_end(client, b)
        assert _runs(home / "b.txt") == 1

        # (c) running with its process: the exit is learnt from the monitor; never run again
        c = _request(client, "c", home / "c.txt")
        c = client.call("approvals.decide", {"id": c["id"], "decision": "approve"})
        assert _begin(client, c)["status"] == "running"
        _start_tool(client, c)
        gateway = restarted(gateway)
        client.close()
        client = gateway.client(timeout=30)
        done = _wait_status(client, c["id"], "executed")
        assert done["result"]["exit_code"] == 0 and done["result"]["recovered"] is True
        with pytest.raises(Conflict):
            _begin(client, done)
        assert _runs(home / "c.txt") == 1

        # (c') marked running, then the gateway died before the tool's process was started:
        # the monitor journals its intent before it starts one, so it knows none was; the
        # session's start under the call's id is then the first, and asked again it is the same
        c2 = _request(client, "c2", home / "c2.txt")
        c2 = client.call("approvals.decide", {"id": c2["id"], "decision": "approve"})
        assert _begin(client, c2)["status"] == "running"
        gateway = restarted(gateway)
        client.close()
        client = gateway.client(timeout=30)
        c2 = client.call("approvals.get", {"id": c2["id"]})
        assert c2["status"] == "running"  # nobody guessed `unknown`: it is not
        with pytest.raises(Conflict):
            _begin(client, c2)
        first = _start_tool(client, c2)
        assert _start_tool(client, c2) == first  # the same call: the same process, once
        client.hello(since_seq=0, topics=["proc.exited"])
        while client.call("procs.get", {"id": first})["state"] != "exited":
            assert client.next_event(20) is not None
        assert _runs(home / "c2.txt") == 1

        # (d) finished: stays executed, and is not run again
        d = _request(client, "d", home / "d.txt")
        d = client.call("approvals.decide", {"id": d["id"], "decision": "approve"})
        _run_to_end(client, d)
        gateway = restarted(gateway)
        client.close()
        client = gateway.client(timeout=30)
        assert client.call("approvals.get", {"id": d["id"]})["status"] == "executed"
        with pytest.raises(Conflict):
            _begin(client, d)
        assert _runs(home / "d.txt") == 1
    finally:
        client.close()
        assert gateway.terminate() == 0


def test_a_hundred_calls_decided_at_random_across_a_restart_run_once_or_never(
    home: Path,
) -> None:
    rng = random.Random(7)
    executed: dict[str, int] = {}
    with Gateway.embedded(home, test_hooks=True) as gateway:
        client = gateway.client()
        try:
            items = [
                client.call(
                    "approvals.request",
                    {
                        "session": f"s{s}",
                        "tool_call": f"c{c}",
                        "tool": "shell",
                        "arguments": {"argv": ["echo", f"{s}-{c}"]},
                    },
                )
                for s in range(10)
                for c in range(10)
            ]
            rng.shuffle(items)
            decisions = {i["id"]: rng.choice(["approve", "deny"]) for i in items}

            def run(item_id: str) -> None:
                """A session's attempt: runs the tool only if begin says running."""
                item = client.call("approvals.get", {"id": item_id})
                try:
                    begun = _begin(client, item)
                except Conflict:
                    return  # already started once: never again
                if begun["status"] == "running":
                    executed[item_id] = executed.get(item_id, 0) + 1
                    client.call("approvals.finish", {"id": item_id, "outcome": "executed"})

            for n, item in enumerate(items):
                client.call(
                    "approvals.decide", {"id": item["id"], "decision": decisions[item["id"]]}
                )
                if n % 3 == 0:
                    run(item["id"])
                if n == 50:
                    gateway.restart()
            for item in items:  # every session tries every call again, after the restart
                run(item["id"])
                run(item["id"])
            final = {i["id"]: i["status"] for i in client.call("approvals.list")["items"]}
        finally:
            client.close()
    for item_id, decision in decisions.items():
        if decision == "approve":
            assert executed.get(item_id) == 1 and final[item_id] == "executed"
        else:
            assert item_id not in executed and final[item_id] == "denied"
