"""gateway.ping, gateway.status and the connection file, over the default ipc endpoint."""

from __future__ import annotations

import stat
from collections.abc import Callable

from tests.conformance.conformance_client import GatewayProcess, RawClient, assert_ok


def test_connection_file_and_ping(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    info = gateway.read_connection()
    assert info is not None
    assert {"endpoint", "pid", "boot_id", "protocol", "started_at"} <= set(info)
    assert info["endpoint"] == f"ipc://{gateway.home}/run/gateway.sock"
    assert info["pid"] == gateway.proc.pid
    assert info["protocol"] == 1
    assert isinstance(info["boot_id"], str) and info["boot_id"]
    assert isinstance(info["started_at"], float)
    assert stat.S_IMODE(gateway.connection_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(gateway.run_dir.stat().st_mode) == 0o700
    assert gateway.socket_path.exists()

    client = connect(gateway)
    reply = client.request("gateway.ping", {}, id_="ping-1")
    assert_ok(reply, "ping-1")
    result = reply["result"]
    assert isinstance(result["boot_id"], str)
    assert result["boot_id"] == info["boot_id"]
    assert isinstance(result["head_seq"], int) and not isinstance(result["head_seq"], bool)
    assert result["head_seq"] >= 1  # gateway.started is journaled before the file is written


def test_ping_with_int_id_and_without_payload(
    gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """`id` may be an int (echoed as an int); `payload` is optional (default {})."""
    client = connect(gateway)
    client.send({"v": 1, "id": 4711, "type": "gateway.ping"})
    reply = client.recv_reply(4711)
    assert reply is not None
    assert_ok(reply, 4711)
    assert reply["result"]["boot_id"] == gateway.info["boot_id"]


def test_status(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    head = client.call("gateway.ping")["head_seq"]
    reply = client.request("gateway.status", {}, id_="st-1")
    assert_ok(reply, "st-1")
    status = reply["result"]
    assert status["state"] == "running"
    assert status["boot_id"] == gateway.info["boot_id"]
    assert isinstance(status["head_seq"], int) and status["head_seq"] >= head
    assert isinstance(status["clients"], int) and not isinstance(status["clients"], bool)
    assert status["clients"] >= 1
    actors = status["actors"]
    assert isinstance(actors, dict) and actors
    assert "probe" in actors  # TEK_TEST_HOOKS=1
    for name, actor in actors.items():
        assert isinstance(name, str)
        assert {"state", "restarts", "last_error"} <= set(actor), actor
        assert isinstance(actor["state"], str)
        assert isinstance(actor["restarts"], int) and not isinstance(actor["restarts"], bool)
        assert actor["last_error"] is None or isinstance(actor["last_error"], str)
    assert actors["probe"]["state"] == "running"


def test_bye_comes_after_the_replies_to_everything_sent_before_it(
    own_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """A socket that sends requests then `bye` gets every reply, then bye's: a request that was
    taken is answered, even when its sender is leaving."""
    client = connect(own_gateway)
    sent = []
    for value in range(1, 21):
        env = client.envelope(
            "config.set", {"path": "limits.tool_rounds", "value": value}, idem=f"bye-{value}"
        )
        client.send(env)
        sent.append(env["id"])
    bye = client.envelope("bye", {})
    client.send(bye)
    order = []
    while len(order) < len(sent) + 1:
        reply = client.recv_reply(None, match=lambda msg: "re" in msg, timeout=20)
        assert reply is not None, f"replies stopped after {order}"
        assert_ok(reply)
        order.append(reply["re"])
    assert order[-1] == bye["id"] and sorted(order[:-1]) == sorted(sent)
    check = connect(own_gateway)
    assert check.call("config.get", {"path": "limits.tool_rounds"})["value"] == 20


def test_every_bye_is_answered_and_a_reader_that_lags_loses_none(
    own_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """Two byes while a request runs, behind a thousand refusals the client has not read yet
    (the socket's queue to it is full): every reply arrives, in order, byes last."""
    client = connect(own_gateway)
    for _ in range(3_000):  # each is answered bad_frame; the client reads none of them yet
        client.send_raw(b"\xc1")
    slow = client.envelope("probe.append", {"key": "slow", "work_ms": 300}, idem="bye-slow")
    first, second = client.envelope("bye", {}), client.envelope("bye", {})
    for env in (slow, first, second):
        client.send(env)
    order, refused = [], 0
    while len(order) < 3:
        reply = client.next_frame(timeout=20)
        assert reply is not None, f"replies stopped after {order} and {refused} refusals"
        if reply["re"] is None:
            refused += 1
            continue
        assert_ok(reply)
        order.append(reply["re"])
    assert refused == 3_000
    assert order == [slow["id"], first["id"], second["id"]]
