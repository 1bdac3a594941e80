"""gateway.shutdown: accepted, announced, and the process exits 0 leaving no run files."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.conformance_client import (
    EXIT_TIMEOUT_S,
    GatewayProcess,
    RawClient,
    assert_ok,
)


def test_shutdown_exits_cleanly(
    own_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    listener = connect(own_gateway, name="l")
    listener.hello("shutdown-listener", since_seq=None)

    client = connect(own_gateway)
    reply = client.request("gateway.shutdown", {"grace_ms": 1000}, id_="sd-1")
    assert_ok(reply, "sd-1")

    notice = listener.next_event(durable_only=False)
    while notice is not None and notice["event"] == "gateway.heartbeat":
        notice = listener.next_event(durable_only=False)
    assert notice is not None, "no gateway.shutdown_imminent event"
    assert notice["event"] == "gateway.shutdown_imminent"
    assert notice["data"]["grace_ms"] == 1000
    assert isinstance(notice["data"]["reason"], str)

    code = own_gateway.wait_exit(EXIT_TIMEOUT_S)
    assert code == 0, own_gateway.log()[-4000:]
    assert not own_gateway.connection_file.exists()
    assert not own_gateway.socket_path.exists()
