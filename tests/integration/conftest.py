"""A gateway and a client over each transport: inproc (embedded), ipc, tcp with a token (ZAP
PLAIN) and tcp with CURVE keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Gateway
from tek_actors.testing import write_config

TOKEN = "t" * 32


class Rig:
    """One embedded gateway on `transport`, and a factory of clients connected to it."""

    def __init__(self, gateway: Gateway, transport: str) -> None:
        self.gateway = gateway
        self.transport = transport
        self.clients: list[Client] = []

    def client(self, **kwargs: Any) -> Client:
        if self.transport == "inproc":
            client = self.gateway.client(**kwargs)
        else:
            if self.transport == "tcp":
                kwargs.setdefault("token", TOKEN)
            elif self.transport == "curve":
                kwargs.setdefault("home", self.gateway.home)  # the home's client key pair
            client = Client(self.gateway.endpoint, **kwargs)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


def open_rig(home: Path, transport: str, **settings: Any) -> tuple[Gateway, Rig]:
    kwargs: dict[str, Any] = {"test_hooks": True}
    if transport == "ipc":
        kwargs["endpoint"] = f"ipc://{home}/run/gateway.sock"
    elif transport == "tcp":
        kwargs.update(endpoint="tcp://127.0.0.1:*", token=TOKEN)
    elif transport == "curve":
        kwargs.update(endpoint="tcp://127.0.0.1:*")
    if settings:
        write_config(home, {"gateway": settings})
    gateway = Gateway(home, embedded=True, **kwargs)
    gateway.start()
    return gateway, Rig(gateway, transport)


@pytest.fixture(params=["inproc", "ipc", "tcp", "curve"])
def rig(request: pytest.FixtureRequest, home: Path) -> Iterator[Rig]:
    gateway, rig = open_rig(home, request.param)
    try:
        yield rig
    finally:
        rig.close()
        assert gateway.stop(grace_ms=0) == 0


@pytest.fixture
def make_rig(home: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(transport: str = "ipc", **settings: Any) -> Rig:
        _, rig = open_rig(home, transport, **settings)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()
        rig.gateway.stop(grace_ms=0)
