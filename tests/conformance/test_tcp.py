"""tcp:// is opt-in and needs the token in hello; nothing is served before it."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.conformance_client import (
    TOKEN,
    GatewayProcess,
    RawClient,
    assert_error,
    assert_ok,
)


def test_tcp_binds_loopback(tcp_gateway: GatewayProcess) -> None:
    endpoint = tcp_gateway.endpoint
    assert endpoint.startswith("tcp://127.0.0.1:")
    assert int(endpoint.rsplit(":", 1)[1]) > 0
    assert not tcp_gateway.socket_path.exists()
    assert TOKEN not in tcp_gateway.connection_file.read_text()


def test_tcp_request_before_hello_is_unauthorized(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(tcp_gateway)
    reply = client.request("gateway.ping", {}, id_="u-1")
    assert_error(reply, "unauthorized", re="u-1")
    reply = client.request("probe.get", {}, id_="u-2")
    assert_error(reply, "unauthorized", re="u-2")


def test_tcp_hello_with_wrong_token_is_unauthorized(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(tcp_gateway)
    wrong = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
    reply = client.request(
        "hello",
        {"client_id": "tcp-bad", "since_seq": None, "topics": None, "token": wrong},
        id_="w-1",
    )
    assert_error(reply, "unauthorized", re="w-1")
    reply = client.request(
        "hello", {"client_id": "tcp-none", "since_seq": None, "topics": None}, id_="w-2"
    )
    assert_error(reply, "unauthorized", re="w-2")
    reply = client.request("gateway.ping", {}, id_="w-3")  # still not authenticated
    assert_error(reply, "unauthorized", re="w-3")


def test_tcp_hello_with_token_then_ping(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(tcp_gateway)
    reply = client.request(
        "hello",
        {"client_id": "tcp-good", "since_seq": None, "topics": None, "token": TOKEN},
        id_="g-1",
    )
    assert_ok(reply, "g-1")
    assert reply["result"]["protocol"] == 1
    assert reply["result"]["boot_id"] == tcp_gateway.info["boot_id"]
    ping = client.request("gateway.ping", {}, id_="g-2")
    assert_ok(ping, "g-2")
    assert ping["result"]["boot_id"] == tcp_gateway.info["boot_id"]
    status = client.call("gateway.status", {})
    assert status["state"] == "running"
    assert TOKEN not in repr(reply) + repr(ping) + repr(status)
    assert TOKEN not in tcp_gateway.log()
