"""The ApprovalActor in an embedded gateway: policy, decisions, expiry, query on execution."""

from __future__ import annotations

from typing import Any

import pytest

from tek_actors import Client, Conflict, NotFound
from tek_actors.runtime import FakeClock
from tests.conftest import Start


def ask(client: Client, call: str, argv: list[str], session: str = "s1") -> dict[str, Any]:
    payload = {"session": session, "tool_call": call, "tool": "shell", "arguments": {"argv": argv}}
    result: dict[str, Any] = client.call("approvals.request", payload)
    return result


def test_the_policy_decides_at_request_time_deny_over_ask_over_auto(gateway_with: Start) -> None:
    rules = [
        {"tool": "shell", "argv_prefix": ["git"], "action": "auto"},
        {"tool": "shell", "argv_prefix": ["git", "push"], "action": "deny"},
    ]
    _, client = gateway_with(
        {"approvals": {"default": "ask", "rules": rules, "tools": {"read_file": "auto"}}}
    )
    assert ask(client, "c1", ["git", "status"])["status"] == "approved"
    pushed = ask(client, "c2", ["git", "push", "origin"])
    assert pushed["status"] == "denied" and pushed["decided_by"] == "policy"
    assert "rule 1" in pushed["reason"]
    assert ask(client, "c3", ["rm", "-rf", "x"])["status"] == "pending"
    read = client.call(
        "approvals.request",
        {"session": "s1", "tool_call": "c4", "tool": "read_file", "arguments": {"path": "/x"}},
    )
    assert read["status"] == "approved"


def test_the_same_call_is_one_request_and_changed_arguments_a_new_one(gateway_with: Start) -> None:
    _, client = gateway_with()
    first = ask(client, "c1", ["ls"])
    assert ask(client, "c1", ["ls"])["id"] == first["id"]
    changed = ask(client, "c1", ["ls", "-la"])
    assert changed["id"] != first["id"] and changed["status"] == "pending"
    assert len(client.call("approvals.list", {"status": "pending"})["items"]) == 2


def test_decide_once_conflict_twice_and_not_found(gateway_with: Start) -> None:
    _, client = gateway_with()
    item = ask(client, "c1", ["ls"])
    decided = client.call("approvals.decide", {"id": item["id"], "decision": "deny"})
    assert decided["status"] == "denied" and decided["decided_by"] == "person"
    with pytest.raises(Conflict):
        client.call("approvals.decide", {"id": item["id"], "decision": "approve"})
    with pytest.raises(NotFound):
        client.call("approvals.decide", {"id": "a-nope", "decision": "approve"})
    begun = client.call("approvals.begin", {"id": item["id"], "policy_version": 1})
    assert begun["status"] == "denied"  # the caller must not run it


def test_remember_adds_a_rule_through_the_configuration(gateway_with: Start) -> None:
    _, client = gateway_with()
    item = ask(client, "c1", ["make", "test"])
    version = item["current_policy_version"]
    decided = client.call(
        "approvals.decide", {"id": item["id"], "decision": "approve", "remember": True}
    )
    assert decided["remembered"] is True and decided["current_policy_version"] == version + 1
    rules = client.call("config.get", {"path": "approvals.rules"})["value"]
    assert rules == [{"tool": "shell", "argv_prefix": ["make", "test"], "action": "auto"}]
    assert ask(client, "c2", ["make", "test"])["status"] == "approved"


def test_pending_requests_expire_on_the_sweep(gateway_with: Start) -> None:
    clock = FakeClock()
    _, client = gateway_with({"approvals": {"expire_after_s": 3600}}, clock=clock)
    client.hello(topics=["approval.*"])
    item = ask(client, "c1", ["ls"])
    assert client.next_event(5)["event"] == "approval.requested"  # type: ignore[index]
    clock.advance(1800)
    assert client.call("approvals.get", {"id": item["id"]})["status"] == "pending"
    clock.advance(1900)  # past the hour, at the next sweep
    expired = client.next_event(5)
    assert expired is not None and expired["event"] == "approval.expired"
    assert client.call("approvals.get", {"id": item["id"]})["status"] == "expired"
    with pytest.raises(Conflict):
        client.call("approvals.decide", {"id": item["id"], "decision": "approve"})
    begun = client.call("approvals.begin", {"id": item["id"], "policy_version": 1})
    assert begun["status"] == "expired" and "nobody decided" in begun["reason"]


def test_a_policy_change_between_request_and_execution_is_honoured(gateway_with: Start) -> None:
    _, client = gateway_with({"approvals": {"default": "auto"}})
    item = ask(client, "c1", ["curl", "example.com"])
    other = ask(client, "c2", ["ls"], session="s2")
    assert item["status"] == other["status"] == "approved"
    seen = item["current_policy_version"]
    client.call("config.set", {"path": "approvals.tools.shell", "value": "deny"})
    begun = client.call("approvals.begin", {"id": item["id"], "policy_version": seen})
    assert begun["status"] == "denied" and "policy changed" in begun["reason"]
    # auto -> ask: an approval the policy gave goes back to a person
    client.call("config.set", {"path": "approvals.tools.shell", "value": "ask"})
    again = client.call("approvals.begin", {"id": other["id"], "policy_version": seen})
    assert again["status"] == "pending"


def test_a_call_runs_once_begin_twice_is_a_conflict(gateway_with: Start) -> None:
    _, client = gateway_with({"approvals": {"default": "auto"}})
    item = ask(client, "c1", ["ls"])
    version = item["current_policy_version"]
    assert (
        client.call("approvals.begin", {"id": item["id"], "policy_version": version})["status"]
        == "running"
    )
    with pytest.raises(Conflict):
        client.call("approvals.begin", {"id": item["id"], "policy_version": version})
    done = client.call(
        "approvals.finish", {"id": item["id"], "outcome": "executed", "result": {"exit_code": 0}}
    )
    assert done["status"] == "executed" and done["result"] == {"exit_code": 0}
    with pytest.raises(Conflict):
        client.call("approvals.finish", {"id": item["id"], "outcome": "executed"})


def test_subscribers_see_requests_and_decisions_and_a_reconnect_sees_them_pending(
    gateway_with: Start,
) -> None:
    gateway, client = gateway_with()
    watcher = gateway.client()
    try:
        watcher.hello(topics=["approval.*"])
        item = ask(client, "c1", ["ls"])
        requested = watcher.next_event(5)
        assert requested is not None and requested["data"]["id"] == item["id"]
        later = gateway.client()
        later.hello(since_seq=0, topics=["approval.requested"])
        replayed = later.next_event(5)
        assert replayed is not None and replayed["data"]["id"] == item["id"]
        later.close()
        client.call("approvals.decide", {"id": item["id"], "decision": "approve"})
        decided = watcher.next_event(5)
        assert decided is not None and decided["event"] == "approval.decided"
    finally:
        watcher.close()


def test_bad_input_is_refused(gateway_with: Start) -> None:
    from tek_actors import InvalidRequest

    _, client = gateway_with()
    for payload in (
        {"session": "", "tool_call": "c", "tool": "shell"},
        {"session": "s", "tool_call": "c", "tool": "shell", "arguments": []},
        {"session": "s", "tool_call": "c"},
    ):
        with pytest.raises(InvalidRequest):
            client.call("approvals.request", payload)
    with pytest.raises(InvalidRequest):
        client.call("approvals.decide", {"id": "a-1", "decision": "maybe"})
    assert client.call("approvals.list")["items"] == []


def test_every_event_names_the_session_and_a_policy_decision_is_one_event(
    gateway_with: Start,
) -> None:
    gateway, client = gateway_with({"approvals": {"tools": {"read_file": "auto"}}})
    watcher = gateway.client()
    try:
        watcher.hello(topics=["approval.*"])
        auto = {
            "session": "s9",
            "tool_call": "r1",
            "tool": "read_file",
            "arguments": {"path": "/x"},
        }
        client.call("approvals.request", auto)
        asked = ask(client, "c1", ["ls"], session="s9")
        client.call("approvals.decide", {"id": asked["id"], "decision": "deny"})
        events = [watcher.next_event(5) for _ in range(3)]
        assert [(e["event"], e["data"]["status"]) for e in events if e] == [
            ("approval.requested", "approved"),  # decided by the policy: nobody is asked
            ("approval.requested", "pending"),
            ("approval.decided", "denied"),
        ]
        assert all(e and e["data"]["session"] == "s9" for e in events)
        assert events[2] and events[2]["data"]["reason"] == "denied by a person"
    finally:
        watcher.close()


def test_a_call_begun_while_the_monitor_is_down_is_never_declared_unknown(
    gateway_with: Start,
) -> None:
    """The approvals' recovery after a restart waits for the process monitor; a call begun in
    the new incarnation meanwhile is its session's to run, not a leftover to close."""
    gateway, client = gateway_with({"approvals": {"default": "auto"}})
    old = ask(client, "old", ["true"])
    client.call("approvals.begin", {"id": old["id"], "policy_version": 0})
    client.call("approvals.attach", {"id": old["id"], "proc_id": "p-unknown"})
    assert gateway.inject_fault("procs", fail_starts=4)  # down for seconds of backoff
    assert gateway.inject_fault("approvals", fail_starts=0)  # recovery now waits for procs
    new = ask(client, "new", ["true"])
    assert client.call("approvals.begin", {"id": new["id"], "policy_version": 0})["status"] == (
        "running"
    )
    assert client.status()["actors"]["procs"]["state"] != "running"  # begun while it is down
    client.hello(since_seq=0, topics=["approval.*"])
    while client.call("approvals.get", {"id": old["id"]})["status"] == "running":
        assert client.next_event(30) is not None, "the recovery never reached the monitor"
    assert client.call("approvals.get", {"id": old["id"]})["status"] == "unknown"
    assert client.call("approvals.get", {"id": new["id"]})["status"] == "running"
