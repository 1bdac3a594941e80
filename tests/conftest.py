"""Shared fixtures. `home` is the plugin's `tek_home`: a short private folder (ipc socket paths
are limited in length), removed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tek_actors import Client, Gateway
from tek_actors.testing import write_config

Start = Callable[..., tuple[Gateway, Client]]


@pytest.fixture
def home(tek_home: Path) -> Path:
    return tek_home


@pytest.fixture
def gateway_with(home: Path) -> Iterator[Start]:
    """gateway_with(config_doc=None, **gateway_kwargs) -> (an embedded gateway with test hooks,
    a client of it), on `home` with `config_doc` as its config.json; all stopped afterwards."""
    opened: list[tuple[Gateway, Client]] = []

    def make(config: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Gateway, Client]:
        if config is not None:
            write_config(home, config)
        gateway = Gateway(home, embedded=True, test_hooks=True, **kwargs).start()
        client = gateway.client()
        opened.append((gateway, client))
        return gateway, client

    yield make
    for gateway, client in opened:
        client.close()
        gateway.stop(grace_ms=0)


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    """A zmq context for raw sockets, destroyed (linger 0) afterwards."""
    context: zmq.Context[Any] = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)
