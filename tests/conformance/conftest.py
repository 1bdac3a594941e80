"""Conformance fixtures: the real gateway as a child process, and raw pyzmq + msgpack clients.

Nothing in this folder imports `tek_actors`: the point of the suite is that any ZeroMQ peer that
speaks MessagePack can use the protocol of PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from tests.conformance.conformance_client import GatewayProcess, RawClient, running_gateway

# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """One ipc gateway for a module whose tests do not disturb each other."""
    with running_gateway() as gw:
        yield gw


@pytest.fixture
def own_gateway() -> Iterator[GatewayProcess]:
    """A gateway for one test (destructive or time-shifting tests)."""
    with running_gateway() as gw:
        yield gw


@pytest.fixture(scope="module")
def tcp_gateway() -> Iterator[GatewayProcess]:
    """A gateway on tcp://127.0.0.1 with a token configured (ZAP PLAIN)."""
    with running_gateway(tcp=True) as gw:
        yield gw


@pytest.fixture(scope="module")
def curve_gateway() -> Iterator[GatewayProcess]:
    """A gateway on tcp://127.0.0.1 with no token: CURVE, keys in <home>/keys."""
    with running_gateway(tcp=True, auth="curve") as gw:
        yield gw


@pytest.fixture
def connect(zctx: zmq.Context[Any]) -> Iterator[Callable[..., RawClient]]:
    """connect(endpoint_or_gateway, name=...) -> RawClient; every client is closed afterwards."""
    clients: list[RawClient] = []

    def make(target: GatewayProcess | str, *, name: str = "c", **auth: Any) -> RawClient:
        """`auth`: RawClient's token=, curve=, routing_id= (none: no credentials)."""
        endpoint = target if isinstance(target, str) else target.endpoint
        client = RawClient(zctx, endpoint, name=name, **auth)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()
