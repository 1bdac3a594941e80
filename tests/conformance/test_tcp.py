"""tcp:// is opt-in, and authentication belongs to the connection: ZeroMQ's ZAP lets a peer in
(CURVE keys, or a token through PLAIN on loopback) before any frame of it reaches the gateway.

A peer whose handshake fails has no connection: it gets nothing, whatever routing id it picks,
and nothing it sent is parsed (multipart, oversized, garbage: none of it is answered).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import zmq
import zmq.auth

from tests.conformance.conformance_client import (
    TOKEN,
    GatewayProcess,
    RawClient,
    assert_ok,
)


def _ping_ok(client: RawClient) -> None:
    reply = client.request("gateway.ping", {})
    assert_ok(reply)


def _refused(client: RawClient) -> None:
    """The handshake failed, so nothing `client` sent got through, and nothing came back."""
    assert client.handshake() in ("failed", "disconnected")
    assert not client.socket.poll(0), "a refused peer received a frame"


def test_tcp_binds_loopback_and_says_how_to_authenticate(tcp_gateway: GatewayProcess) -> None:
    endpoint = tcp_gateway.endpoint
    assert endpoint.startswith("tcp://127.0.0.1:")
    assert int(endpoint.rsplit(":", 1)[1]) > 0
    assert not tcp_gateway.socket_path.exists()
    assert tcp_gateway.info["auth"] == "token"
    assert TOKEN not in tcp_gateway.connection_file.read_text()


def test_tcp_with_the_token_is_served(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(tcp_gateway, token=TOKEN, monitor=True)
    assert client.handshake() == "succeeded"
    reply = client.hello("tcp-good")  # no token in hello: the connection is authenticated
    assert reply["protocol"] == 1
    assert reply["boot_id"] == tcp_gateway.info["boot_id"]
    _ping_ok(client)
    status = client.call("gateway.status", {})
    assert status["state"] == "running"
    assert TOKEN not in json.dumps(status)
    assert TOKEN not in tcp_gateway.log()


def test_tcp_without_or_with_a_wrong_token_gets_nothing(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    wrong = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
    for auth in ({}, {"token": wrong}, {"token": "x"}):
        intruder = connect(tcp_gateway, name="intruder", monitor=True, **auth)
        intruder.send(intruder.envelope("gateway.ping", {}))
        intruder.send(intruder.envelope("hello", {"client_id": "x", "token": TOKEN}))
        _refused(intruder)
    _ping_ok(connect(tcp_gateway, token=TOKEN))


def test_a_stolen_routing_id_gets_nothing(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """Client A authenticates under a fixed routing id; a second socket that sets the same id
    without the token gets no connection, so it cannot read A's replies or act as A."""
    rid = b"fixed-routing-id"
    owner = connect(tcp_gateway, name="owner", token=TOKEN, routing_id=rid)
    owner.hello("owner", since_seq=None)
    _ping_ok(owner)
    for auth in ({}, {"token": TOKEN[::-1]}):
        thief = connect(tcp_gateway, name="thief", routing_id=rid, monitor=True, **auth)
        thief.send(thief.envelope("config.get", {}))
        _refused(thief)
        _ping_ok(owner)  # and the owner's connection is still its own


def test_nothing_is_parsed_before_authentication(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    intruder = connect(tcp_gateway, name="raw", monitor=True)
    intruder.send_frames([b"a", b"b", b"c"])
    intruder.send_raw(b"\xc1" * 100)
    intruder.send_raw(b"x" * (3 << 20))
    _refused(intruder)
    _ping_ok(connect(tcp_gateway, token=TOKEN))


# -- CURVE ------------------------------------------------------------------------------------


def test_curve_with_the_homes_client_key(
    curve_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    info = curve_gateway.info
    assert info["auth"] == "curve"
    public = zmq.auth.load_certificate(curve_gateway.home / "keys" / "gateway.key")[0]
    assert info["server_key"] == public.decode()  # the connection file names the server key
    secret = curve_gateway.home / "keys" / "gateway.key_secret"
    assert secret.stat().st_mode & 0o077 == 0
    assert (curve_gateway.home / "keys").stat().st_mode & 0o077 == 0
    client = connect(curve_gateway, curve=curve_gateway.curve, monitor=True)
    assert client.handshake() == "succeeded"
    client.hello("curve-client")
    _ping_ok(client)


def test_curve_refuses_an_unknown_key_until_it_is_authorized(
    curve_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """Another program: its own key pair, its public key put in <home>/keys/authorized/."""
    assert curve_gateway.curve is not None
    server = curve_gateway.curve[0]
    public, secret = zmq.curve_keypair()
    stranger = connect(curve_gateway, name="stranger", curve=(server, public, secret), monitor=True)
    stranger.send(stranger.envelope("gateway.ping", {}))
    _refused(stranger)
    plain = connect(curve_gateway, name="plain", token=TOKEN, monitor=True)
    _refused(plain)  # no token lets anyone into a CURVE gateway

    folder = curve_gateway.home / "keys" / "authorized"
    (folder / "other-program.key").write_text(
        f'metadata\ncurve\n    public-key = "{public.decode()}"\n'
    )
    admitted = connect(curve_gateway, name="admitted", curve=(server, public, secret))
    _ping_ok(admitted)


def test_curve_stolen_routing_id_gets_nothing(
    curve_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    rid = b"curve-owner-id"
    owner = connect(curve_gateway, name="owner", curve=curve_gateway.curve, routing_id=rid)
    owner.hello("curve-owner")
    _ping_ok(owner)
    assert curve_gateway.curve is not None
    public, secret = zmq.curve_keypair()
    thief = connect(
        curve_gateway,
        name="thief",
        routing_id=rid,
        curve=(curve_gateway.curve[0], public, secret),
        monitor=True,
    )
    thief.send(thief.envelope("config.get", {}))
    _refused(thief)
    _ping_ok(owner)
