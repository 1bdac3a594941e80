"""config.get/set/unset/replace/validate/schema/backups/restore through a real gateway."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Conflict, Gateway, InvalidValue, RequestTimeout
from tek_actors.config import Config, ConfigChanged, ConfigDependent
from tek_actors.runtime import ChildSpec, StatusQuery
from tek_actors.testing import write_config
from tests.config.conftest import backups, read_config


def test_a_fresh_home_runs_on_the_built_in_local_provider_with_no_file(
    home: Path, client: Client
) -> None:
    reply = client.call("config.get")
    assert reply["version"] == 0 and reply["source"] == "defaults"
    value = reply["value"]
    assert value["providers"]["local"]["kind"] == "local"
    assert value["models"]["local"]["provider"] == "local"
    assert value["default_model"] == "local"
    assert client.call("config.get", {"path": "approvals.default"})["value"] == "ask"
    assert not (home / "config.json").exists()


def test_set_writes_the_file_durably_then_answers_once_every_dependent_applied(
    home: Path, start: Callable[..., Gateway]
) -> None:
    gateway = start()
    client, watcher = gateway.client(), gateway.client()
    try:
        watcher.hello(topics=["config.*"])
        reply = client.call("config.set", {"path": "limits.session_queue", "value": 32})
        assert reply["version"] == 1
        assert set(reply["applied_by"]) == dependents(gateway)
        assert read_config(home)["limits"] == {"session_queue": 32}
        assert stat.S_IMODE(os.stat(home / "config.json").st_mode) == 0o600
        changed, applied = watcher.next_event(5), watcher.next_event(5)
        assert changed is not None and changed["event"] == "config.changed"
        assert changed["data"]["version"] == 1
        assert changed["data"]["changes"] == {"limits.session_queue": 32}
        assert applied is not None and applied["event"] == "config.applied"
        assert applied["data"] == {"version": 1, "applied_by": reply["applied_by"]}
        assert client.call("config.get", {"path": "limits.session_queue"}) == {
            "version": 1,
            "value": 32,
            "source": "file",
        }
        assert len(backups(home)) == 1  # every accepted document is kept as a backup
    finally:
        client.close()
        watcher.close()


def dependents(gateway: Gateway) -> set[str]:
    """Every component that applies the configuration: the config-dependent actors, and the
    frontend (through its hook). Taken from the gateway's own specs, so a new dependent counts."""
    actors = {s.name for s in gateway._specs if issubclass(s.actor_class, ConfigDependent)}
    assert {"approvals", "providers", "procs", "retention"} <= actors
    return actors | {"frontend"}


def test_a_whole_object_can_be_set_at_a_path(home: Path, client: Client) -> None:
    provider = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "K"}
    client.call("config.set", {"path": "providers.lab", "value": provider})
    model = {"provider": "lab", "model": "qwen", "context_window": 32768, "fallbacks": ["local"]}
    assert client.call("config.set", {"path": "models.fast", "value": model})["version"] == 2
    assert client.call("config.set", {"path": "default_model", "value": "fast"})["version"] == 3
    assert client.call("config.get", {"path": "models.fast.fallbacks"})["value"] == ["local"]
    assert read_config(home)["providers"]["lab"] == provider


REFUSALS = [
    ("limits.session_queue", "many", "limits.session_queue", "an integer"),  # type
    ("limits.session_queue", 0, "limits.session_queue", "a value >= 1"),  # range
    ("limits.sesion_queue", 5, "limits.sesion_queue", "one of"),  # unknown key
    ("approvals.default", "maybe", "approvals.default", "one of"),  # literal
    ("default_model", "nope", "default_model", "one of"),  # dangling reference
    (
        "models.x",
        {"provider": "ghost", "model": "m"},
        "models.x.provider",
        "one of ['local']",
    ),
    ("models.local.fallbacks", ["local"], "models.local.fallbacks.0", "one of"),
    ("providers.p", {"kind": "openai", "base_url": "ftp://x"}, "providers.p.base_url", "text"),
    ("providers.p", {"kind": "openai", "typo": 1}, "providers.p.typo", "one of"),
    ("limits.session_queue.deeper", 1, "limits.session_queue", "an object"),
    ("models.ghost.context_window", 9000, "models.ghost", "an existing object"),
]


@pytest.mark.parametrize(("path", "value", "named", "expected"), REFUSALS)
def test_a_refused_change_names_the_path_and_changes_nothing(
    home: Path, client: Client, path: str, value: Any, named: str, expected: str
) -> None:
    client.call("config.set", {"path": "limits.tool_rounds", "value": 4})  # a file exists
    before = (home / "config.json").read_bytes()
    backups_before = backups(home)
    with pytest.raises(InvalidValue) as caught:
        client.call("config.set", {"path": path, "value": value})
    assert caught.value.details["path"] == named
    assert named in caught.value.message
    assert expected in str(caught.value.details["expected"])
    assert client.call("config.get")["version"] == 1  # not even the version moved
    assert (home / "config.json").read_bytes() == before
    assert backups(home) == backups_before
    with pytest.raises(InvalidValue):  # the dry run refuses it the same way
        client.call("config.validate", {"path": path, "value": value})


def test_validate_is_a_dry_run_that_reports_what_would_change(home: Path, client: Client) -> None:
    reply = client.call("config.validate", {"path": "gateway.heartbeat_s", "value": 2.0})
    assert reply == {
        "valid": True,
        "changes": ["gateway.heartbeat_s"],
        "restart_required": ["gateway.heartbeat_s"],
    }
    assert client.call("config.get")["version"] == 0 and not (home / "config.json").exists()


def test_schema_is_json_schema_for_the_whole_document(client: Client) -> None:
    schema = client.call("config.schema")
    assert set(schema["properties"]) >= {"providers", "models", "approvals", "limits", "gateway"}
    assert schema["$defs"]["ApprovalsConfig"]["properties"]["default"]["enum"] == [
        "auto",
        "ask",
        "deny",
    ]


def test_unset_returns_a_field_to_its_default(home: Path, client: Client) -> None:
    client.call("config.set", {"path": "limits.tool_rounds", "value": 4})
    assert client.call("config.unset", {"path": "limits.tool_rounds"})["version"] == 2
    assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 8
    assert "tool_rounds" not in read_config(home).get("limits", {})
    with pytest.raises(InvalidValue) as caught:
        client.call("config.unset", {"path": "limits.tool_rounds"})
    assert caught.value.details["path"] == "limits.tool_rounds"


def test_setting_the_same_value_again_is_not_a_change(client: Client) -> None:
    client.call("config.set", {"path": "limits.tool_rounds", "value": 4})
    again = client.call("config.set", {"path": "limits.tool_rounds", "value": 4})
    assert again == {"version": 1, "applied_by": [], "changed": False}


def test_an_idempotent_resend_is_one_change(client: Client) -> None:
    payload = {"path": "limits.tool_rounds", "value": 5}
    first = client.call("config.set", payload, idem="set-rounds-5")
    client.call("config.set", {"path": "limits.tool_rounds", "value": 6})
    assert client.call("config.set", payload, idem="set-rounds-5") == first
    assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 6


def test_replace_checks_the_version_it_was_based_on(home: Path, client: Client) -> None:
    client.call("config.set", {"path": "limits.tool_rounds", "value": 4})
    document = read_config(home)
    document["limits"]["tool_rounds"] = 9
    assert client.call("config.replace", {"document": document, "base_version": 1})["version"] == 2
    with pytest.raises(Conflict):
        client.call("config.replace", {"document": document, "base_version": 1})


def test_restore_brings_back_a_backup_as_a_new_version(home: Path, client: Client) -> None:
    client.call("config.set", {"path": "limits.tool_rounds", "value": 4})
    client.call("config.set", {"path": "limits.tool_rounds", "value": 5})
    listed = client.call("config.backups")["backups"]
    assert [b["valid"] for b in listed] == [True, True]
    older = listed[-1]["name"]
    assert client.call("config.restore", {"name": older})["version"] == 3
    assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 4
    with pytest.raises(InvalidValue):
        client.call("config.restore", {"name": "../config.json"})


def test_backups_keep_the_newest_ten(home: Path, client: Client) -> None:
    for rounds in range(1, 15):
        client.call("config.set", {"path": "limits.tool_rounds", "value": rounds})
    kept = backups(home)
    assert len(kept) == 10
    assert json.loads(kept[-1].read_text())["limits"]["tool_rounds"] == 14


def test_live_limits_reach_the_frontend_and_the_retention_ticker(
    start: Callable[..., Gateway],
) -> None:
    gateway = start()
    client = gateway.client()
    try:
        client.call("config.set", {"path": "gateway.request_timeout_ms", "value": 1234})
        assert gateway._frontend is not None
        assert gateway._frontend.settings.default_timeout_ms == 1234
        client.call("config.set", {"path": "retention.prune_interval_s", "value": 42.0})
        retention = gateway._directory.lookup("retention")
        assert retention is not None and retention.ask(StatusQuery())["every_s"] == 42.0
        reply = client.call("config.set", {"path": "gateway.heartbeat_s", "value": 2.0})
        assert reply["restart_required"] == ["gateway.heartbeat_s"]
    finally:
        client.close()


class Deaf(ConfigDependent):
    """A dependent that takes the first configuration and never acknowledges a change."""

    def configure(self, config: Config) -> None:
        pass

    def on_message(self, message: Any) -> Any:
        if isinstance(message, ConfigChanged):
            return None
        return super().on_message(message)


def test_a_dependent_that_never_acknowledges_is_named_in_the_error(
    home: Path, start: Callable[..., Gateway]
) -> None:
    gateway = start(extra_children=[ChildSpec("deaf", Deaf)])
    client, watcher = gateway.client(), gateway.client()
    try:
        watcher.hello(topics=["config.*"])
        with pytest.raises(RequestTimeout) as caught:
            client.call("config.set", {"path": "limits.tool_rounds", "value": 3})
        details = caught.value.details
        assert details["missing"] == ["deaf"] and "deaf" in caught.value.message
        assert set(details["applied_by"]) == dependents(gateway) - {"deaf"}
        assert details["retryable"] is False
        names = [watcher.next_event(5)["event"] for _ in range(2)]  # type: ignore[index]
        assert names == ["config.changed", "config.apply_timed_out"]
        # the change is written and in force; the next change waits for the straggler again
        assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 3
        # a restart of the tree from the config actor on: every dependent reads version 1
        client.call("test.crash", {"actor": "config"})
        applied = watcher.next_event(10)
        assert applied is not None and applied["event"] == "config.applied"
        assert applied["data"] == {"version": 1, "applied_by": ["start"]}
    finally:
        client.close()
        watcher.close()


def test_the_apply_timeout_comes_from_the_configuration(
    home: Path, start: Callable[..., Gateway]
) -> None:
    write_config(home, {"limits": {"apply_timeout_ms": 100}})
    gateway = start(extra_children=[ChildSpec("deaf", Deaf)])
    client = gateway.client()
    try:
        with pytest.raises(RequestTimeout) as caught:
            client.call("config.set", {"path": "limits.tool_rounds", "value": 3})
        assert "100 ms" in caught.value.message
    finally:
        client.close()


@pytest.mark.parametrize(
    ("tool", "path", "words"),
    [
        ({"command": ["grep", "{pattern}"]}, "tools.find.command.1", "not a parameter"),
        ({"command": ["ls"], "cwd": "relative/dir"}, "tools.find.cwd", "absolute"),
        ({"command": []}, "tools.find.command", "at least 1"),
        (
            {"command": ["ls"], "parameters": {"p": {"type": "list"}}},
            "tools.find.parameters.p.type",
            "",
        ),
    ],
)
def test_a_bad_tool_definition_is_refused_with_its_path(
    start: Callable[..., Gateway], tool: dict[str, Any], path: str, words: str
) -> None:
    gateway = start()
    with gateway.client() as client:
        with pytest.raises(InvalidValue) as caught:
            client.call("config.set", {"path": "tools.find", "value": tool})
        assert caught.value.details["path"] == path and words in caught.value.message
        with pytest.raises(InvalidValue) as caught:
            client.call("config.set", {"path": "tools.shell", "value": {"command": ["sh"]}})
        assert "built-in tool" in caught.value.message
        assert client.call("config.get", {"path": "tools"})["value"] == {}
