"""A gateway per test on the test's home, and helpers to look at its config files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Gateway


@pytest.fixture
def start(home: Path) -> Iterator[Callable[..., Gateway]]:
    """start(**kwargs) -> a started embedded gateway on `home` (stopped after the test)."""
    gateways: list[Gateway] = []

    def make(**kwargs: Any) -> Gateway:
        kwargs.setdefault("test_hooks", True)
        kwargs.setdefault("config_watch_s", 0.05)
        gateway = Gateway(home, embedded=True, **kwargs)
        gateway.start()
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        gateway.stop(grace_ms=0)


@pytest.fixture
def client(start: Callable[..., Gateway]) -> Iterator[Client]:
    gateway = start()
    c = gateway.client()
    try:
        yield c
    finally:
        c.close()


def read_config(home: Path) -> dict[str, Any]:
    return json.loads((home / "config.json").read_text())


def backups(home: Path) -> list[Path]:
    return sorted((home / "backups").glob("config-*.json"))
