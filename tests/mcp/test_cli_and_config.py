"""`config.set` of a server is answered once it runs (or refused, changing nothing, when it
cannot start), and `tek mcp list|add|remove|restart` through the real `tek`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tek_actors.errors import InvalidValue
from tek_actors.testing import GatewayProcess
from tests.cli.test_cli import tek
from tests.conftest import Start
from tests.mcp.conftest import SERVER, server_config, server_view


def test_config_set_is_answered_once_the_server_runs_and_it_is_started_once(
    gateway_with: Start, tmp_path: Path
) -> None:
    _, client = gateway_with()
    client.hello(topics=["mcp.server"])
    client.call("config.set", {"path": "mcp.servers.t", "value": server_config(tmp_path / "m")})
    view = server_view(client)  # no waiting: it runs by the answer
    assert view["state"] == "running" and view["tools"] and view["restarts"] == 0
    states = []
    while (event := client.next_event(5)) is not None and event["data"]["state"] != "running":
        states.append(event["data"]["state"])
    assert event is not None and event["data"]["pid"] == view["pid"]  # the trial's own server
    assert states == []  # it was taken over running: never "starting" a second time


def test_a_server_that_cannot_start_is_refused_by_name_and_nothing_changes(
    gateway_with: Start, tmp_path: Path
) -> None:
    _, client = gateway_with()
    before = client.call("config.get", {"path": None})
    bad = server_config(tmp_path / "m", "--fail-start")
    with pytest.raises(InvalidValue, match=r"mcp\.servers\.t: the MCP server could not start") as e:
        client.call("config.set", {"path": "mcp.servers.t", "value": bad})
    assert "refuses to start" in str(e.value)  # its stderr says why
    assert e.value.details["path"] == "mcp.servers.t"
    after = client.call("config.get", {"path": None})
    assert after["version"] == before["version"] and after["value"] == before["value"]
    assert client.call("mcp.list", {})["servers"] == {}
    missing = {"command": ["no-such-mcp-server-xyz"]}
    with pytest.raises(InvalidValue, match="no program 'no-such-mcp-server-xyz'"):
        client.call("config.set", {"path": "mcp.servers.u", "value": missing})


@pytest.mark.slow
def test_tek_mcp_add_list_restart_remove(home: Path, tmp_path: Path) -> None:
    with GatewayProcess(home):
        added = tek(home, "mcp", "add", "t", "--", sys.executable, str(SERVER), str(tmp_path / "m"))
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("t: running, runs ") and "mcp__t__echo" in added.stdout
        listed = json.loads(tek(home, "mcp", "list", "--json").stdout)["servers"]["t"]
        assert listed["state"] == "running" and listed["restarts"] == 0
        table = tek(home, "mcp", "list")
        assert table.returncode == 0 and "mcp__t__look" in table.stdout
        restarted = tek(home, "mcp", "restart", "t")
        assert restarted.returncode == 0 and "restarts 1" in restarted.stdout
        assert tek(home, "mcp", "remove", "t").returncode == 0
        assert "no MCP servers" in tek(home, "mcp", "list").stdout

        refused = tek(home, "mcp", "add", "u", "--", "no-such-mcp-server-xyz")
        assert refused.returncode == 1 and "no program 'no-such-mcp-server-xyz'" in refused.stderr
        for args, code in (
            (["mcp", "remove", "nope"], 1),
            (["mcp", "restart", "nope"], 1),
            (["mcp", "add", "a__b", "--", "x"], 1),
            (["mcp", "add", "v", "--env", "TEK_NOT_SET_ANYWHERE", "--", "x"], 2),
            (["mcp", "add", "v"], 2),
        ):
            result = tek(home, *args)
            assert result.returncode == code, (args, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
        assert json.loads(tek(home, "mcp", "list", "--json").stdout)["servers"] == {}


@pytest.mark.slow
def test_tek_mcp_add_takes_a_secret_from_the_shell_not_from_argv(
    home: Path, tmp_path: Path
) -> None:
    token = "ghp_" + "s3cr3t" * 4
    with GatewayProcess(home) as gateway:
        added = subprocess.run(
            [
                sys.executable,
                "-m",
                "tek_actors",
                "--home",
                str(home),
                "mcp",
                "add",
                "gh",
                "--env",
                "GITHUB_TOKEN",
                "--",
                sys.executable,
                str(SERVER),
                str(tmp_path / "m"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            env=dict(os.environ, TEK_LOG_LEVEL="WARNING", GITHUB_TOKEN=token),
        )
        assert added.returncode == 0, added.stderr
        assert token not in added.stdout + added.stderr
        with gateway.client() as client:
            assert client.call("config.get", {"path": "mcp.servers.gh.env"})["value"] == {
                "GITHUB_TOKEN": "<redacted>"
            }
    assert json.loads((home / "config.json").read_text())["mcp"]["servers"]["gh"]["env"] == {
        "GITHUB_TOKEN": token
    }
