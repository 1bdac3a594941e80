"""config.json on disk: hand edits, bad files at start, versions, migrations, unknown fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, Conflict, Gateway
from tek_actors.config import CURRENT_VERSION
from tek_actors.testing import write_config
from tests.config.conftest import backups, read_config


def _next(watcher: Client, name: str) -> dict[str, Any]:
    """The next event called `name` (others in between are skipped)."""
    for _ in range(20):
        event = watcher.next_event(10)
        assert event is not None, f"no {name} event came"
        if event["event"] == name:
            return event
    raise AssertionError(f"no {name} among the next 20 events")


def _replace_file(path: Path, text: str) -> None:
    """Save as an editor would: a new file renamed over the old one."""
    tmp = path.with_name("config.json.swp")
    tmp.write_text(text)
    tmp.replace(path)


def test_a_valid_hand_edit_is_noticed_and_applied(
    home: Path, start: Callable[..., Gateway]
) -> None:
    write_config(home, {"limits": {"tool_rounds": 4}})
    gateway = start()
    client, watcher = gateway.client(), gateway.client()
    try:
        watcher.hello(topics=["config.*"])
        doc = read_config(home)
        doc["limits"]["tool_rounds"] = 7
        _replace_file(home / "config.json", json.dumps(doc))
        changed = _next(watcher, "config.changed")
        assert changed["data"]["cause"] == "edit"
        assert changed["data"]["changes"] == {"limits.tool_rounds": 7}
        applied = _next(watcher, "config.applied")
        assert applied["data"]["version"] == changed["data"]["version"]
        assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 7
    finally:
        client.close()
        watcher.close()


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"limits": {"tool_rounds": 4}', ""),  # torn JSON
        ('{"config_version": 2, "limits": {"tool_rounds": "many"}}', "limits.tool_rounds"),
        ('{"config_version": 2, "default_model": "ghost"}', "default_model"),
        ('{"config_version": 99}', "config_version"),
        ("[1, 2]", ""),
    ],
)
def test_an_invalid_hand_edit_is_refused_and_the_last_good_stays(
    home: Path, start: Callable[..., Gateway], text: str, path: str
) -> None:
    write_config(home, {"limits": {"tool_rounds": 4}})
    gateway = start()
    client, watcher = gateway.client(), gateway.client()
    try:
        watcher.hello(topics=["config.*"])
        version = client.call("config.get")["version"]
        _replace_file(home / "config.json", text)
        invalid = _next(watcher, "config.invalid")
        assert invalid["data"]["cause"] == "edit"
        assert invalid["data"]["errors"][0]["path"] == path
        reply = client.call("config.get")
        assert reply["version"] == version and reply["value"]["limits"]["tool_rounds"] == 4
        assert "problem" in reply
        assert (home / "config.json").read_text() == text  # the edit is the user's: kept
    finally:
        client.close()
        watcher.close()


@pytest.mark.parametrize(
    "text",
    ['{"limits": {"tool_rounds": 4', '{"config_version": 2, "limits": {"tool_rounds": -1}}'],
)
def test_a_bad_file_at_start_runs_on_the_last_good_backup(
    home: Path, start: Callable[..., Gateway], text: str
) -> None:
    first = start()
    with first.client() as client:
        client.call("config.set", {"path": "limits.tool_rounds", "value": 5})
    first.stop(grace_ms=0)
    (home / "config.json").write_text(text)
    again = start()
    with again.client() as client:
        client.hello(since_seq=0, topics=["config.invalid"])
        invalid = _next(client, "config.invalid")
        assert invalid["data"]["cause"] == "start"
        assert invalid["data"]["in_force"].startswith("backup config-")
        reply = client.call("config.get")
        assert reply["value"]["limits"]["tool_rounds"] == 5 and reply["version"] == 1
        assert (home / "config.json").read_text() == text
        # the next change replaces the bad file, which is kept as a rejected backup first
        client.call("config.set", {"path": "limits.tool_rounds", "value": 6})
    assert read_config(home)["limits"]["tool_rounds"] == 6
    rejected = [p for p in backups(home) if p.name.endswith("-rejected.json")]
    assert [p.read_text() for p in rejected] == [text]


def test_a_missing_file_that_existed_runs_on_the_last_good_backup(
    home: Path, start: Callable[..., Gateway]
) -> None:
    first = start()
    with first.client() as client:
        client.call("config.set", {"path": "limits.tool_rounds", "value": 5})
    first.stop(grace_ms=0)
    (home / "config.json").unlink()
    with start().client() as client:
        client.hello(since_seq=0, topics=["config.invalid"])
        assert "missing" in _next(client, "config.invalid")["data"]["message"]
        assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 5


def test_a_file_from_a_newer_tek_is_refused_and_never_overwritten(
    home: Path, start: Callable[..., Gateway]
) -> None:
    text = json.dumps({"config_version": CURRENT_VERSION + 1, "limits": {"tool_rounds": 2}})
    (home / "config.json").write_text(text)
    with start().client() as client:
        client.hello(since_seq=0, topics=["config.invalid"])
        invalid = _next(client, "config.invalid")["data"]
        assert invalid["newer_version"] is True
        assert invalid["errors"][0]["path"] == "config_version"
        assert "newer tek" in invalid["message"]
        assert client.call("config.get")["source"] == "defaults"
        with pytest.raises(Conflict) as caught:
            client.call("config.set", {"path": "limits.tool_rounds", "value": 3})
        assert caught.value.details["path"] == "config_version"
    assert (home / "config.json").read_text() == text


def test_an_edit_made_while_the_gateway_was_down_is_a_recorded_change(
    home: Path, start: Callable[..., Gateway]
) -> None:
    first = start()
    with first.client() as client:
        client.call("config.set", {"path": "limits.tool_rounds", "value": 5})
    first.stop(grace_ms=0)
    doc = read_config(home)
    doc["limits"]["tool_rounds"] = 9
    (home / "config.json").write_text(json.dumps(doc))
    with start().client() as client:
        client.hello(since_seq=0, topics=["config.changed"])
        events = [_next(client, "config.changed")["data"] for _ in range(2)]
        assert events[1]["cause"] == "start" and events[1]["version"] == 2
        assert events[1]["changes"] == {"limits.tool_rounds": 9}  # diffed against the backup
        assert client.call("config.get")["version"] == 2


def test_a_version_1_file_is_migrated_after_a_backup_and_keeps_unknown_fields(
    home: Path, start: Callable[..., Gateway]
) -> None:
    v1 = {
        "gateway": {"journal_keep_events": 5000, "heartbeat_s": 2.0, "from_the_future": [1]},
        "plugins": {"weather": {"units": "metric"}},
    }
    (home / "config.json").write_text(json.dumps(v1))
    with start().client() as client:
        value = client.call("config.get")["value"]
        assert value["retention"]["keep_events"] == 5000
        assert value["gateway"]["heartbeat_s"] == 2.0
    doc = read_config(home)
    assert doc["config_version"] == CURRENT_VERSION
    assert doc["retention"] == {"keep_events": 5000}
    assert "journal_keep_events" not in doc["gateway"]
    assert doc["gateway"]["from_the_future"] == [1] and doc["plugins"] == v1["plugins"]
    assert any(json.loads(p.read_text()) == v1 for p in backups(home))  # the old file, kept


def test_unknown_fields_survive_set_and_restart(home: Path, start: Callable[..., Gateway]) -> None:
    write_config(home, {"plugins": {"weather": {"units": "metric"}}, "limits": {"x_new": 1}})
    first = start()
    with first.client() as client:
        client.call("config.set", {"path": "limits.tool_rounds", "value": 3})
        client.call("config.set", {"path": "limits", "value": {"tool_rounds": 4, "x_new": 1}})
    first.stop(grace_ms=0)
    with start().client() as client:
        assert client.call("config.get", {"path": "limits.tool_rounds"})["value"] == 4
        client.call("config.set", {"path": "approvals.default", "value": "deny"})
    doc = read_config(home)
    assert doc["plugins"] == {"weather": {"units": "metric"}} and doc["limits"]["x_new"] == 1


def test_a_corrupt_file_with_no_backup_starts_on_the_defaults(
    home: Path, start: Callable[..., Gateway]
) -> None:
    (home / "config.json").write_text("\x00\x01 not json")
    with start().client() as client:
        assert client.call("config.get")["source"] == "defaults"
        assert client.call("gateway.ping")["head_seq"] > 0
