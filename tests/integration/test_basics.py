"""The spine end to end over inproc, ipc and tcp: requests, events, idempotency, bad input."""

from __future__ import annotations

import pytest
import zmq
import zmq.auth

from tek_actors import Client, Conflict, InvalidRequest, RequestTimeout, Unauthorized, UnknownType
from tek_actors.transport import ClientAuth
from tests.integration.conftest import Rig


def test_ping_and_status(rig: Rig) -> None:
    client = rig.client()
    ping = client.ping()
    assert ping["boot_id"] == rig.gateway.boot_id and ping["head_seq"] >= 1
    status = client.status()
    assert status["state"] == "running"
    assert set(status["actors"]) >= {"probe", "retention", "frontend", "journal"}
    assert all(a["restarts"] == 0 and a["last_error"] is None for a in status["actors"].values())
    assert status["clients"] >= 1


def test_acknowledged_changes_are_events_in_order_without_gaps(rig: Rig) -> None:
    writer = rig.client()
    results = [writer.call("probe.append", {"key": f"k{i}", "value": i}) for i in range(20)]
    assert [r["count"] for r in results] == list(range(1, 21))
    reader = rig.client()
    hello = reader.hello(since_seq=0)
    assert hello["resync"] == "replay" and hello["head_seq"] == 21
    seqs, keys = [], []
    for event in reader.events(timeout=5):
        seqs.append(event["seq"])
        if event["event"] == "probe.appended":
            keys.append(event["data"]["key"])
        if event["seq"] == hello["head_seq"]:
            break
    assert seqs == list(range(1, 22))
    assert keys == [f"k{i}" for i in range(20)]
    writer.call("probe.append", {"key": "live"})  # then live events follow, in order
    event = reader.next_event(5)
    assert event is not None and (event["seq"], event["data"]["key"]) == (22, "live")


def test_topics_filter_what_a_client_receives(rig: Rig) -> None:
    writer, reader = rig.client(), rig.client()
    reader.hello(since_seq=0, topics=["probe.*"])
    writer.call("probe.append", {"key": "a"})
    event = reader.next_event(5)
    assert event is not None and event["event"] == "probe.appended"  # gateway.started skipped


def test_an_idem_resend_is_applied_once_and_answered_the_same(rig: Rig) -> None:
    client = rig.client()
    first = client.call("probe.append", {"key": "once"}, idem="idem-1")
    again = client.call("probe.append", {"key": "once"}, idem="idem-1")
    assert first == again == {"key": "once", "count": 1}
    assert client.call("probe.get")["order"] == ["once"]
    with pytest.raises(InvalidRequest) as caught:
        client.call("probe.append", {"key": "other"}, idem="idem-1")
    assert caught.value.details["field"] == "idem"
    assert client.call("probe.get")["order"] == ["once"]


def test_bad_input_gets_a_clear_error_and_changes_nothing(rig: Rig) -> None:
    client = rig.client()
    head = client.ping()["head_seq"]
    with pytest.raises(InvalidRequest) as caught:
        client.call("probe.append", {"key": 5})
    assert caught.value.details["field"] == "payload.key"
    with pytest.raises(InvalidRequest):
        client.call("probe.append", {"key": "x", "surprise": True})
    with pytest.raises(UnknownType):
        client.call("nosuch.verb")
    with pytest.raises(UnknownType):
        client.call("probe.nosuchverb")
    with pytest.raises(InvalidRequest):
        client.call("gateway.restart", {"grace_ms": -1})
    client.call("probe.append", {"key": "dup"})
    with pytest.raises(Conflict):
        client.call("probe.append", {"key": "dup"})
    assert client.ping()["head_seq"] == head + 1  # only the one good append happened


def test_a_deadline_is_enforced_and_says_whether_the_work_started(rig: Rig) -> None:
    client = rig.client()
    client.ping()  # connected (and hello'd): the deadline below is the request's alone
    slow = {"key": "slow", "work_ms": 2000}  # far past the deadline, even on a loaded machine
    with pytest.raises(RequestTimeout) as caught:
        client.call("probe.append", slow, timeout=0.5, idem="slow-1")
    assert caught.value.details.get("started") is True
    # The work had started, so it completes; the idem key tells the caller how it ended.
    assert client.call("probe.append", slow, idem="slow-1")["count"] == 1


@pytest.mark.parametrize("transport", ["tcp", "curve"])
def test_tcp_refuses_clients_without_credentials(make_rig, transport: str) -> None:
    """The handshake itself is refused (ZAP): the client says `unauthorized` at once."""
    rig = make_rig(transport)
    wrong = {"token": "wrong" * 8} if transport == "tcp" else {"auth": _stranger(rig)}
    intruder = rig.client(timeout=10, **wrong)
    with pytest.raises(Unauthorized) as caught:
        intruder.ping()
    assert "refused this client's credentials" in caught.value.message
    anonymous = Client(rig.gateway.endpoint, timeout=10)  # no home, no token: no credentials
    try:
        with pytest.raises(Unauthorized):
            anonymous.ping()
    finally:
        anonymous.close()
    assert rig.client().ping()["boot_id"] == rig.gateway.boot_id


def _stranger(rig) -> ClientAuth:
    """A CURVE key pair nobody authorized, for the gateway's real server key (if any)."""
    public, secret = zmq.curve_keypair()
    server = rig.gateway.home.config_dir / "keys" / "gateway.key"
    server_key = zmq.auth.load_certificate(server)[0] if server.exists() else zmq.curve_keypair()[0]
    return ClientAuth("curve", server_key=server_key, public_key=public, secret_key=secret)
