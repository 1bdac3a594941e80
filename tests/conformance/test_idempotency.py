"""A request carrying `idem` that was already completed gets the first reply again."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.conformance_client import GatewayProcess, RawClient, assert_error, assert_ok


def test_same_idem_twice_returns_first_reply(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(gateway)
    payload = {"key": "idem-a", "value": [1, 2, 3]}
    first = client.request("probe.append", payload, id_="i-1", idem="k1")
    assert_ok(first, "i-1")
    assert first["result"]["key"] == "idem-a"
    head = client.call("gateway.ping")["head_seq"]

    second = client.request("probe.append", payload, id_="i-2", idem="k1")
    assert_ok(second, "i-2")
    assert second["result"] == first["result"]

    other = connect(gateway, name="other")  # another connection: still the first reply
    third = other.request("probe.append", payload, id_="i-3", idem="k1")
    assert_ok(third, "i-3")
    assert third["result"] == first["result"]

    state = client.call("probe.get", {})
    assert state["order"].count("idem-a") == 1
    assert state["items"]["idem-a"] == [1, 2, 3]
    assert client.call("gateway.ping")["head_seq"] == head, "the append was done twice"


def test_same_idem_different_payload_is_refused(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(gateway)
    first = client.request("probe.append", {"key": "idem-b", "value": 1}, idem="k2")
    assert_ok(first)
    before = client.call("probe.get", {})
    head = client.call("gateway.ping")["head_seq"]

    reply = client.request("probe.append", {"key": "idem-c", "value": 2}, id_="i-9", idem="k2")
    assert_error(reply, {"invalid_request", "conflict"}, re="i-9")

    assert client.call("probe.get", {}) == before
    assert "idem-c" not in before["items"]
    assert client.call("gateway.ping")["head_seq"] == head


def test_same_idem_while_first_is_running_is_done_once(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """A resend that arrives while the first copy still runs gets the same reply, done once."""
    client = connect(gateway)
    head = client.call("gateway.ping")["head_seq"]
    payload = {"key": "idem-d", "value": "d", "work_ms": 500}
    # one socket, so the gateway reads them in this order: the second comes while the first works
    client.send(client.envelope("probe.append", payload, id_="r-1", idem="k3"))
    client.send(client.envelope("probe.append", payload, id_="r-2", idem="k3"))
    first = client.recv_reply("r-1")
    second = client.recv_reply("r-2")
    assert first is not None and second is not None
    assert_ok(first, "r-1")
    assert_ok(second, "r-2")
    assert second["result"] == first["result"]
    assert first["result"]["key"] == "idem-d"
    state = client.call("probe.get", {})
    assert state["order"].count("idem-d") == 1
    assert client.call("gateway.ping")["head_seq"] == head + 1


def test_same_idem_different_payload_while_first_is_running_is_refused(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(gateway)
    client.send(
        client.envelope(
            "probe.append", {"key": "idem-e", "value": 1, "work_ms": 500}, id_="m-1", idem="k4"
        )
    )
    client.send(
        client.envelope("probe.append", {"key": "idem-f", "value": 2}, id_="m-2", idem="k4")
    )
    second = client.recv_reply("m-2")  # refused at once, while the first is still running
    first = client.recv_reply("m-1")
    assert first is not None and second is not None
    assert_ok(first, "m-1")
    assert first["result"]["key"] == "idem-e"
    assert "idem-f" not in client.call("probe.get", {})["items"]
    assert_error(second, {"invalid_request", "conflict"}, re="m-2")
