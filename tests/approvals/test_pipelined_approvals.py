"""The approval actor's pipelined commands and its bounded state, in an embedded gateway.

Requests are sent with `Client.submit` (many in flight at once), so the actor validates each
against the state with the earlier ones still pending.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from tek_actors import Conflict
from tek_actors.approvals.actor import KEEP_FINISHED
from tests.conftest import Start

AUTO = {"approvals": {"tools": {"shell": "auto"}}}


def request(call: str, argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "session": "s1",
        "tool_call": call,
        "tool": "shell",
        "arguments": {"argv": argv or ["true"]},
    }


def all_of(futures: list[Any]) -> list[Any]:
    return [f.result(60) for f in futures]


def test_a_call_asked_many_times_at_once_is_one_request_and_begins_once(
    gateway_with: Start,
) -> None:
    _, client = gateway_with(AUTO)
    views = all_of([client.submit("approvals.request", request("c1")) for _ in range(20)])
    assert len({v["id"] for v in views}) == 1
    item = views[0]["id"]
    begins = [
        client.submit("approvals.begin", {"id": item, "policy_version": 1}) for _ in range(10)
    ]
    outcomes = []
    for future in begins:
        try:
            outcomes.append(future.result(60)["status"])
        except Conflict:
            outcomes.append("conflict")
    assert outcomes == ["running"] + ["conflict"] * 9  # the first, validated in order


def test_finished_approvals_leave_the_state_and_stay_findable_after_a_restart(
    gateway_with: Start,
) -> None:
    gateway, client = gateway_with(AUTO)
    n = KEEP_FINISHED + 20
    calls = [f"c{i}" for i in range(n)]
    items = [
        v["id"] for v in all_of([client.submit("approvals.request", request(c)) for c in calls])
    ]
    all_of([client.submit("approvals.begin", {"id": i, "policy_version": 1}) for i in items])
    result = {"exit_code": 0}
    finish = {"outcome": "executed", "result": result}
    all_of([client.submit("approvals.finish", {"id": i, **finish}) for i in items])
    held = client.call("approvals.list", {})["items"]
    assert len(held) == KEEP_FINISHED  # the newest finished; the oldest 20 were archived
    assert {v["id"] for v in held} == set(items[20:])
    client.close()
    gateway.stop(grace_ms=0)
    _, client = gateway_with()
    for call, item in zip(calls[:20], items[:20], strict=True):
        assert client.call("approvals.get", {"id": item})["status"] == "executed"
        listed = client.call("approvals.list", {"session": "s1", "tool_call": call})["items"]
        assert [v["id"] for v in listed] == [item]
        assert [v["id"] for v in client.call("approvals.list", {"tool_call": call})["items"]] == [
            item
        ]
        again = client.call("approvals.request", request(call))  # asked again: the same one
        assert again["id"] == item and again["status"] == "executed"
        with pytest.raises(Conflict):
            client.call("approvals.begin", {"id": item, "policy_version": 1})
    assert len(client.call("approvals.list", {})["items"]) == KEEP_FINISHED


def test_snapshots_hold_only_the_bounded_state(gateway_with: Start) -> None:
    gateway, client = gateway_with(AUTO)
    n = KEEP_FINISHED + 150
    items = [
        v["id"]
        for v in all_of([client.submit("approvals.request", request(f"k{i}")) for i in range(n)])
    ]
    all_of([client.submit("approvals.begin", {"id": i, "policy_version": 1}) for i in items])
    finish = {"outcome": "failed", "result": None}
    all_of([client.submit("approvals.finish", {"id": i, **finish}) for i in items])
    client.call("approvals.list", {})  # a read after the last answer
    journal = gateway._journal
    assert journal is not None
    journal.append("barrier", []).result(10)  # the writer is FIFO: the snapshots are in
    (_, blob), *_ = journal.load_snapshots("approvals")
    state = msgpack.unpackb(blob, raw=False)["state"]
    over = [i for i in state["items"].values() if i["status"] == "failed"]
    assert len(over) == len(state["finished"]) <= KEEP_FINISHED < n
