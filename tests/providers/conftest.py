"""Loopback OpenAI and Anthropic servers, and a gateway configured to call them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Gateway
from tek_actors.testing import write_config
from tek_actors.testing.fake_providers import FakeProvider


@pytest.fixture
def openai_server() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[FakeProvider]:
    with FakeProvider("anthropic") as server:
        yield server


@pytest.fixture
def second_openai() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as server:
        yield server


def provider_config(
    primary: FakeProvider, backup: FakeProvider | None = None, **primary_extra: Any
) -> dict[str, Any]:
    """`main` (on `primary`) falling back to `spare` (on `backup`), or alone."""
    doc: dict[str, Any] = {
        "providers": {
            "p1": {
                "kind": primary.kind,
                "base_url": primary.base_url,
                "api_key": "sk-first-key-0001",
                **primary_extra,
            }
        },
        "models": {"main": {"provider": "p1", "model": "m1"}},
        "default_model": "main",
    }
    if backup is not None:
        doc["providers"]["p2"] = {
            "kind": backup.kind,
            "base_url": backup.base_url,
            "api_key": "sk-second-key-0002",
        }
        doc["models"]["spare"] = {"provider": "p2", "model": "m2"}
        doc["models"]["main"]["fallbacks"] = ["spare"]
    return doc


@pytest.fixture
def gateway_on(home: Path) -> Iterator[Callable[..., tuple[Gateway, Client]]]:
    """gateway_on(config_doc, **gateway_kwargs) -> (started embedded gateway, its client)."""
    opened: list[tuple[Gateway, Client]] = []

    def start(doc: dict[str, Any], **kwargs: Any) -> tuple[Gateway, Client]:
        write_config(home, doc)
        gateway = Gateway(home, embedded=True, test_hooks=True, **kwargs)
        gateway.start()
        client = gateway.client()
        opened.append((gateway, client))
        return gateway, client

    yield start
    for gateway, client in opened:
        client.close()
        gateway.stop(grace_ms=0)


def ask(client: Client, text: str = "hello", **payload: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.call(
        "providers.complete", {"messages": [{"role": "user", "content": text}], **payload}
    )
    return result
