"""Seeded random attacks on the handshake: whatever mix of wrong credentials, stolen routing ids,
raw bytes and well-formed requests an intruder sends, it gets no connection and nothing it sent
is acted on, while an authenticated owner is served throughout.

Each seed draws a sequence of intruders; an intruder picks its credentials (none, a wrong token,
a random CURVE key pair, the right public key with a wrong secret, a wrong server key), maybe the
owner's routing id, and frames (garbage, multipart, oversized, or envelopes that would change
something: config.set, procs.start, mcp.restart). Proof that nothing was acted on: the journal's
head does not move (every change is an event), and the owner is served throughout.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import zmq

from tests.conformance.conformance_client import TOKEN, GatewayProcess, RawClient, assert_ok

WRITES = [
    ("config.set", {"path": "limits.tool_rounds", "value": 3}),
    ("procs.start", {"argv": ["touch", "/tmp/tek-intruder-ran"], "cwd": "/tmp"}),
    ("mcp.restart", {"name": "x"}),
    ("hello", {"client_id": "intruder", "token": TOKEN}),
]


def _frames(rng: random.Random, intruder: RawClient) -> None:
    """Queue what the intruder would send; a socket with no peer yet (or ever: its handshake
    fails) may refuse to queue, which is fine: it never gets further than that."""
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["garbage", "multipart", "huge", "write"])
        if kind == "garbage":
            frames = [rng.randbytes(rng.randint(0, 300))]
        elif kind == "multipart":
            frames = [rng.randbytes(8) for _ in range(rng.randint(2, 5))]
        elif kind == "huge":
            frames = [b"\x92" * (rng.randint(1, 3) << 20)]
        else:
            frames = [msgpack.packb(intruder.envelope(*rng.choice(WRITES)))]
        with contextlib.suppress(zmq.Again):
            intruder.socket.send_multipart(frames, zmq.NOBLOCK)


def _credentials(rng: random.Random, gateway: GatewayProcess, curve: bool) -> dict[str, Any]:
    wrong_token = TOKEN[:-1] + rng.choice("xyz")
    choices: list[dict[str, Any]] = [{}, {"token": wrong_token}, {"token": "x" * 16}]
    if curve:
        assert gateway.curve is not None
        server, public, _secret = gateway.curve
        other_public, other_secret = zmq.curve_keypair()
        choices += [
            {"curve": (server, other_public, other_secret)},  # a key nobody authorized
            {"curve": (server, public, other_secret)},  # the right public key, a wrong secret
            {"curve": (other_public, public, other_secret)},  # not the gateway's key at all
            {"token": TOKEN},  # a token is no way into a CURVE gateway
        ]
    return rng.choice(choices)


def _raw_tcp(rng: random.Random, endpoint: str) -> None:
    """Bytes that are not even ZMTP, on a plain TCP connection."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(rng.randbytes(rng.randint(1, 2048)))


def _attack(
    seed: int,
    gateway: GatewayProcess,
    connect: Callable[..., RawClient],
    owner: RawClient,
    rid: bytes,
    *,
    curve: bool,
) -> None:
    rng = random.Random(seed)
    head = owner.call("gateway.ping", {})["head_seq"]
    for i in range(12):
        if rng.random() < 0.2:
            _raw_tcp(rng, gateway.endpoint)
            continue
        auth = _credentials(rng, gateway, curve)
        if rng.random() < 0.4:
            auth["routing_id"] = rid  # the owner's
        intruder = connect(gateway, name=f"intruder-{seed}-{i}", monitor=True, **auth)
        _frames(rng, intruder)
        assert intruder.handshake() in ("failed", "disconnected"), (seed, i, auth.keys())
        assert not intruder.socket.poll(0), f"seed {seed}: an intruder received a frame"
        assert_ok(owner.request("gateway.ping", {}))  # the owner is served throughout
    after = owner.call("gateway.ping", {})["head_seq"]
    assert after == head, f"seed {seed}: the journal moved ({head} -> {after}): something ran"


@pytest.mark.parametrize("seed", [1501, 1502, 1503])
def test_random_intruders_on_a_token_gateway_get_nothing(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient], seed: int
) -> None:
    rid = f"owner-{seed}".encode()
    owner = connect(tcp_gateway, name="owner", token=TOKEN, routing_id=rid)
    _attack(seed, tcp_gateway, connect, owner, rid, curve=False)


@pytest.mark.parametrize("seed", [1511, 1512, 1513])
def test_random_intruders_on_a_curve_gateway_get_nothing(
    curve_gateway: GatewayProcess, connect: Callable[..., RawClient], seed: int
) -> None:
    rid = f"curve-owner-{seed}".encode()
    owner = connect(curve_gateway, name="owner", curve=curve_gateway.curve, routing_id=rid)
    _attack(seed, curve_gateway, connect, owner, rid, curve=True)


def test_the_attacks_would_be_seen(
    tcp_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    """The proof can fail: the same write from an authenticated peer moves the journal."""
    owner = connect(tcp_gateway, name="writer", token=TOKEN)
    head = owner.call("gateway.ping", {})["head_seq"]
    assert_ok(owner.request(*WRITES[0]))
    assert owner.call("gateway.ping", {})["head_seq"] > head
    assert_ok(owner.request("config.unset", {"path": "limits.tool_rounds"}))
