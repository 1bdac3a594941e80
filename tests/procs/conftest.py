"""The `start` fixture: embedded gateways with test hooks, whose processes are killed and
waited for afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Gateway
from tek_actors.testing import write_config
from tests.procs.helpers import wait_exit


@pytest.fixture
def start(home: Path) -> Iterator[Callable[..., tuple[Gateway, Client]]]:
    opened: list[tuple[Gateway, Client]] = []

    def make(config: dict[str, Any] | None = None) -> tuple[Gateway, Client]:
        if config is not None:
            write_config(home, config)
        gateway = Gateway(home, embedded=True, test_hooks=True).start()
        client = gateway.client()
        client.hello(topics=["proc.*"])
        opened.append((gateway, client))
        return gateway, client

    yield make
    for gateway, client in opened:
        if gateway.wait(0) is not None:
            continue  # the test stopped it
        for proc in client.call("procs.list", {"state": "running"})["items"]:
            client.call("procs.kill", {"id": proc["id"], "signal": "KILL"})
            wait_exit(client, proc["id"])
        client.close()
        gateway.stop(grace_ms=0)
