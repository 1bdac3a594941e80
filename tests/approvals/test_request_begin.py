"""`approvals.request` with `begin`: a call the policy approves is requested and begun in one
command and one commit, with every guarantee of a separate `begin` (docs/approvals.md).

An embedded gateway; requests go over the client like a session's (the session's tool loop
sends `begin` on every first request, sessions/toolcalls.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tek_actors import Client, Conflict, InvalidRequest
from tests.conftest import Start

AUTO = {"approvals": {"tools": {"shell": "auto"}}}


def request(call: str, argv: list[str], session: str = "s1", **extra: Any) -> dict[str, Any]:
    payload = {"session": session, "tool_call": call, "tool": "shell", "arguments": {"argv": argv}}
    return payload | extra


def events_of(client: Client, approval_id: str) -> list[tuple[int, str, float]]:
    """(seq, type, ts) of every approval event of `approval_id`, replayed from the journal."""
    client.hello(since_seq=0, topics=["approval.*"])
    found = []
    while (event := client.next_event(1)) is not None:
        if event["data"].get("id") == approval_id:
            found.append((event["seq"], event["event"], event["ts"]))
    return found


def test_an_auto_approved_call_is_requested_and_running_in_one_commit(
    gateway_with: Start,
) -> None:
    gateway, client = gateway_with(AUTO)
    view = client.call("approvals.request", request("c1", ["true"], begin=True))
    assert view["status"] == "running" and view["begun"] is True
    assert view["decided_by"] == "policy" and view["started_at"] is not None
    watcher = gateway.client()
    try:
        found = events_of(watcher, view["id"])
    finally:
        watcher.close()
    assert [t for _, t, _ in found] == ["approval.requested", "approval.running"]
    (seq1, _, ts1), (seq2, _, ts2) = found
    assert seq2 == seq1 + 1 and ts1 == ts2  # one append, one transaction
    # and nothing else is left to do before the tool runs: begin now would be a second start
    with pytest.raises(Conflict):
        client.call("approvals.begin", {"id": view["id"], "policy_version": 1})


def test_asked_again_it_is_the_same_call_and_never_begins_twice(gateway_with: Start) -> None:
    _, client = gateway_with(AUTO)
    futures = [
        client.submit("approvals.request", request("c1", ["true"], begin=True)) for _ in range(10)
    ]
    views = [f.result(60) for f in futures]
    assert len({v["id"] for v in views}) == 1
    assert all(v["status"] == "running" for v in views)
    # only the first one may start the tool; the others say it is running (a restarted caller
    # goes on through the call's own key, never a second start)
    assert [bool(v.get("begun")) for v in views] == [True] + [False] * 9
    [item] = client.call("approvals.list", {"session": "s1"})["items"]
    assert item["status"] == "running"


@pytest.mark.parametrize(
    ("policy", "status"), [("ask", "pending"), ("deny", "denied")], ids=["ask", "deny"]
)
def test_a_call_the_policy_does_not_approve_is_not_begun(
    gateway_with: Start, policy: str, status: str
) -> None:
    _, client = gateway_with({"approvals": {"tools": {"shell": policy}}})
    view = client.call("approvals.request", request("c1", ["rm", "x"], begin=True))
    assert view["status"] == status and "begun" not in view
    if policy == "ask":  # a person approves; then the caller begins it, as before
        client.call("approvals.decide", {"id": view["id"], "decision": "approve"})
        version = view["current_policy_version"]
        begun = client.call("approvals.begin", {"id": view["id"], "policy_version": version})
        assert begun["status"] == "running" and begun["begun"] is True


def test_a_known_approved_call_is_begun_under_the_policy_of_now(gateway_with: Start) -> None:
    _, client = gateway_with(AUTO)
    first = client.call("approvals.request", request("c1", ["curl", "x"]))
    other = client.call("approvals.request", request("c2", ["ls"]))
    assert first["status"] == other["status"] == "approved"  # without begin: approved only
    client.call("config.set", {"path": "approvals.tools.shell", "value": "deny"})
    denied = client.call("approvals.request", request("c1", ["curl", "x"], begin=True))
    assert denied["id"] == first["id"] and denied["status"] == "denied"
    assert "policy changed" in denied["reason"]
    client.call("config.set", {"path": "approvals.tools.shell", "value": "ask"})
    back = client.call("approvals.request", request("c2", ["ls"], begin=True))
    assert back["id"] == other["id"] and back["status"] == "pending"  # a person decides now
    client.call("config.set", {"path": "approvals.tools.shell", "value": "auto"})
    third = client.call("approvals.request", request("c3", ["ls"]))
    begun = client.call("approvals.request", request("c3", ["ls"], begin=True))
    assert begun["id"] == third["id"] and begun["status"] == "running" and begun["begun"]


def test_a_bad_begin_is_refused_and_changes_nothing(gateway_with: Start) -> None:
    _, client = gateway_with(AUTO)
    for value in ("yes", 1, None):
        with pytest.raises(InvalidRequest):
            client.call("approvals.request", request("c1", ["true"], begin=value))
    assert client.call("approvals.list")["items"] == []
