"""A gateway per test (with the config it needs), and waiting for a session's answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Gateway
from tek_actors.testing import write_config

Start = Callable[..., tuple[Gateway, Client]]


@pytest.fixture
def start(home: Path) -> Iterator[Start]:
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


def answer_of(client: Client, session_id: str) -> dict[str, Any]:
    """The next session.message or session.error of the session (deltas skipped)."""
    while True:
        event = client.next_event(20)
        assert event is not None, "no answer came"
        answer = event["event"] in ("session.message", "session.error")
        if answer and event["data"]["session"] == session_id:
            return dict(event["data"])
