"""A client that saw an approval's event finds the approval when it asks (the pipelined
approvals actor answers a read only once nothing it did is still pending)."""

from __future__ import annotations

from tests.conftest import Start


def test_every_approval_whose_event_was_seen_is_found_at_once(gateway_with: Start) -> None:
    _, client = gateway_with()
    client.hello(topics=["approval.requested"])
    calls = 60
    futures = [
        client.submit(
            "approvals.request",
            {"session": "s", "tool_call": f"c{i}", "tool": "shell", "arguments": {"argv": ["x"]}},
        )
        for i in range(calls)  # many in flight: the actor has appends pending while we read
    ]
    seen = 0
    while seen < calls:
        event = client.next_event(30)
        assert event is not None, f"only {seen} of {calls} approval.requested events came"
        found = client.call("approvals.get", {"id": event["data"]["id"]})  # never not_found
        assert found["status"] == "pending"
        seen += 1
    assert all(f.result(30)["status"] == "pending" for f in futures)
