"""An API key lives in config.json and its backups, and nowhere else the gateway writes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tek_actors import Gateway, InvalidValue
from tek_actors.config import REDACTED
from tests.config.conftest import read_config


def _all_events(gateway: Gateway) -> list[dict[str, Any]]:
    """Every journaled event, as a client that replays from the start receives them."""
    with gateway.client() as reader:
        head = reader.hello(since_seq=0)["head_seq"]
        events: list[dict[str, Any]] = []
        while not events or events[-1]["seq"] < head:
            event = reader.next_event(10)
            assert event is not None, "the replay stopped before the head"
            events.append(event)
        return events


def test_an_api_key_is_only_in_config_json_and_its_backups(
    home: Path, start: Callable[..., Gateway]
) -> None:
    key = "sk-test-" + secrets.token_hex(16)
    logger.enable("tek_actors")
    sink = logger.add(home / "state" / "gateway-test.log", level="DEBUG")
    seen: list[Any] = []
    try:
        gateway = start()
        with gateway.client() as client:
            provider = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": key}
            seen.append(client.call("config.set", {"path": "providers.lab", "value": provider}))
            seen.append(client.call("config.get"))
            seen.append(client.call("config.get", {"path": "providers.lab"}))
            secret = client.call("config.get", {"path": "providers.lab.api_key"})
            assert secret["value"] == REDACTED
            with pytest.raises(InvalidValue) as caught:  # the key in the wrong field
                client.call("config.set", {"path": "providers.lab.timeout_s", "value": key})
            seen.append([caught.value.message, caught.value.details])
            with pytest.raises(InvalidValue) as caught:  # and a key where none is allowed
                client.call("config.set", {"path": "providers.lab.api_key", "value": 7})
            seen.append([caught.value.message, caught.value.details])
            # a document sent back as config.get showed it keeps the key it could not see
            doc = read_config(home)
            doc["providers"]["lab"]["api_key"] = REDACTED
            doc["limits"] = {"tool_rounds": 3}
            seen.append(client.call("config.replace", {"document": doc}))
            seen.append(client.call("config.validate", {"document": doc}))
            seen.append(client.status())
        seen.append(_all_events(gateway))
        gateway.restart()  # every actor snapshots
        seen.append(_all_events(gateway))
        gateway.stop(grace_ms=0)
    finally:
        logger.remove(sink)
        logger.disable("tek_actors")
    assert read_config(home)["providers"]["lab"]["api_key"] == key
    assert key not in json.dumps(seen)
    needle = key.encode()
    holders = []
    for path in home.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            holders.append(path.relative_to(home).as_posix())
    assert holders and all(h == "config.json" or h.startswith("backups/") for h in holders), holders
    assert (home / "state" / "gateway-test.log").stat().st_size > 0  # the log did get lines


def test_an_mcp_servers_env_and_headers_are_only_in_config_json_and_its_backups(
    home: Path, start: Callable[..., Gateway]
) -> None:
    """Every value of an MCP server's `env` (and `headers`) is a secret: redacted in every
    answer, event, snapshot, log line and in the vetting of the change that added it."""
    from tests.mcp.conftest import server_config

    token = "ghp_" + secrets.token_hex(16)
    logger.enable("tek_actors")
    sink = logger.add(home / "state" / "gateway-test.log", level="DEBUG")
    seen: list[Any] = []
    try:
        gateway = start()
        with gateway.client() as client:
            server = server_config(home / "marks", env={"GITHUB_TOKEN": token})
            seen.append(client.call("config.set", {"path": "mcp.servers.gh", "value": server}))
            seen.append(client.call("config.get"))
            seen.append(client.call("config.get", {"path": "mcp.servers.gh.env"}))
            seen.append(client.call("mcp.list"))
            doc = read_config(home)  # sent back as config.get showed it: the token is kept
            doc["mcp"]["servers"]["gh"]["env"]["GITHUB_TOKEN"] = REDACTED
            doc["mcp"]["servers"]["gh"]["timeout_s"] = 30.0
            seen.append(client.call("config.replace", {"document": doc}))
            seen.append(client.status())
        seen.append(_all_events(gateway))
        gateway.restart()
        seen.append(_all_events(gateway))
        gateway.stop(grace_ms=0)
    finally:
        logger.remove(sink)
        logger.disable("tek_actors")
    assert read_config(home)["mcp"]["servers"]["gh"]["env"]["GITHUB_TOKEN"] == token
    assert token not in json.dumps(seen)
    holders = [
        path.relative_to(home).as_posix()
        for path in home.rglob("*")
        if path.is_file() and token.encode() in path.read_bytes()
    ]
    assert holders and all(h == "config.json" or h.startswith("backups/") for h in holders), holders
