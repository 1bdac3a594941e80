"""hello, replay, topics, live events and resuming after a reconnect."""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Callable

from tests.conformance.conformance_client import GatewayProcess, RawClient, assert_ok

QUIET_S = 0.5  # how long "no further event" is watched for (a zmq poll timeout)


def _key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def _append(client: RawClient, key: str | None = None) -> str:
    key = key or _key()
    result = client.call("probe.append", {"key": key, "value": {"n": 1}})
    assert result["key"] == key
    return key


def _head(client: RawClient) -> int:
    head = client.call("gateway.ping")["head_seq"]
    assert isinstance(head, int)
    return head


def _check_hello(result: dict, gateway: GatewayProcess) -> None:  # type: ignore[type-arg]
    assert result["protocol"] == 1
    assert isinstance(result["gateway_version"], str) and result["gateway_version"]
    assert result["boot_id"] == gateway.info["boot_id"]
    assert isinstance(result["head_seq"], int)
    assert result["resync"] in ("replay", "snapshot", "none")


def test_hello_replays_everything_then_live(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(gateway)
    reply = client.request(
        "hello", {"client_id": "replay-all", "since_seq": 0, "topics": None}, id_="h-1"
    )
    assert_ok(reply, "h-1")
    hello = reply["result"]
    _check_hello(hello, gateway)
    assert hello["resync"] == "replay"
    head = hello["head_seq"]
    assert head >= 1

    events = client.events_until(head)
    assert [e["seq"] for e in events] == list(range(1, head + 1))
    first = events[0]
    assert first["event"] == "gateway.started"
    assert first["boot"] == gateway.info["boot_id"]
    assert first["data"]["boot_id"] == gateway.info["boot_id"]

    key = _append(client)
    live = client.next_event()
    assert live is not None, "the live probe.appended event did not arrive"
    assert live["seq"] == head + 1
    assert live["event"] == "probe.appended"
    assert live["data"] == {"key": key, "value": {"n": 1}}
    assert live["boot"] == gateway.info["boot_id"]
    assert client.next_event(QUIET_S) is None


def test_hello_topics_filter(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    writer = connect(gateway, name="w")
    _append(writer)  # at least one probe event in the journal
    everything = connect(gateway, name="all")
    head = everything.hello("topics-all", since_seq=0)["head_seq"]
    all_events = everything.events_until(head)
    assert [e["seq"] for e in all_events] == list(range(1, head + 1))
    expected = [e for e in all_events if fnmatch.fnmatchcase(e["event"], "probe.*")]
    assert expected, "no probe events to replay"
    assert len(expected) < len(all_events), "no non-probe events to filter out"

    probe_only = connect(gateway, name="p")
    hello = probe_only.hello("topics-probe", since_seq=0, topics=["probe.*"])
    assert hello["resync"] == "replay"
    assert hello["head_seq"] == head
    replayed = probe_only.events_until(expected[-1]["seq"])
    assert replayed == expected

    # a live non-probe durable event (an actor restart) must not reach the probe-only client
    crash = writer.call("test.crash", {"actor": "retention", "fail_starts": 0})
    assert crash == {"crashed": "retention"}
    restarted = everything.next_event()
    assert restarted is not None and restarted["event"] == "gateway.actor_restarted"
    assert restarted["seq"] == head + 1
    key = _append(writer)
    appended = everything.next_event()
    assert appended is not None and appended["seq"] == head + 2
    live = probe_only.next_event()
    assert live is not None
    assert live["event"] == "probe.appended" and live["data"]["key"] == key
    assert live["seq"] == head + 2
    assert probe_only.next_event(QUIET_S) is None


def test_hello_since_none_gets_only_new_events(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(gateway)
    _append(client)
    hello = client.hello("live-only", since_seq=None)
    _check_hello(hello, gateway)
    head = hello["head_seq"]
    assert head == _head(client)
    assert client.next_event(QUIET_S) is None, "since_seq nil must not replay"
    key = _append(client)
    event = client.next_event()
    assert event is not None
    assert event["seq"] == head + 1
    assert event["event"] == "probe.appended" and event["data"]["key"] == key


def test_hello_since_head_resyncs_none(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(gateway)
    head = _head(client)
    hello = client.hello("at-head", since_seq=head)
    _check_hello(hello, gateway)
    assert hello["resync"] == "none"
    assert hello["head_seq"] == head
    assert client.next_event(QUIET_S) is None
    key = _append(client)
    event = client.next_event()
    assert event is not None
    assert event["seq"] == head + 1
    assert event["data"]["key"] == key


def test_reconnect_resumes_without_duplicates(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client_id = f"resume-{uuid.uuid4().hex[:8]}"
    writer = connect(gateway, name="w")

    first = connect(gateway, name="a")
    head = first.hello(client_id, since_seq=None)["head_seq"]
    _append(writer)
    seen = first.next_event()
    assert seen is not None and seen["seq"] == head + 1
    last_seen = seen["seq"]
    first.close()  # the connection goes away

    missed = [_append(writer), _append(writer)]  # while it was away

    second = connect(gateway, name="b")  # a new socket, so a new identity
    hello = second.hello(client_id, since_seq=last_seen)
    assert hello["resync"] == "replay"
    assert hello["head_seq"] == last_seen + 2
    replayed = second.events_until(last_seen + 2)
    assert [e["seq"] for e in replayed] == [last_seen + 1, last_seen + 2]
    assert [e["data"]["key"] for e in replayed] == missed
    assert second.next_event(QUIET_S) is None, "duplicate or extra event after the resume"

    key = _append(writer)
    live = second.next_event()
    assert live is not None and live["seq"] == last_seen + 3
    assert live["data"]["key"] == key
    assert second.next_event(QUIET_S) is None


def test_hello_again_on_same_socket_resumes(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """A second hello on the same connection restarts the stream from its since_seq."""
    client = connect(gateway)
    head = client.hello("rehello", since_seq=None)["head_seq"]
    _append(client)
    _append(client)
    got = client.events_until(head + 2)
    assert [e["seq"] for e in got] == [head + 1, head + 2]
    hello = client.hello("rehello", since_seq=head + 1)
    assert hello["resync"] == "replay"
    again = client.events_until(head + 2)
    assert [e["seq"] for e in again] == [head + 2]
    assert client.next_event(QUIET_S) is None
