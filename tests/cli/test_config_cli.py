"""`tek config ...` and `tek setup`, as a person and a script use them, with and without a
running gateway."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tek_actors.cli import cli
from tek_actors.config import setup as setup_steps
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow

EDITOR = """import json, os, sys
path = sys.argv[1]
doc = json.load(open(path))
doc.setdefault("limits", {})["tool_rounds"] = json.loads(os.environ["ROUNDS"])
open(path, "w").write(json.dumps(doc))
"""


def _editor(home: Path) -> str:
    script = home / "editor.py"
    script.write_text(EDITOR)
    return f"{sys.executable} {script}"


def test_config_without_a_gateway_is_a_locked_checked_write(home: Path) -> None:
    assert tek(home, "config", "get", "default_model").stdout.strip() == "local"
    done = tek(home, "config", "set", "limits.tool_rounds", "5")
    assert done.returncode == 0 and "no gateway is running" in done.stdout
    assert json.loads((home / "config.json").read_text())["limits"] == {"tool_rounds": 5}
    assert stat.S_IMODE(os.stat(home / "config.json").st_mode) == 0o600
    before = (home / "config.json").read_bytes()
    refused = tek(home, "config", "set", "limits.tool_rounds", "many")
    assert refused.returncode == 1
    assert "limits.tool_rounds" in refused.stderr and "integer" in refused.stderr
    as_json = tek(home, "--json", "config", "set", "limits.tool_roundz", "5")
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "invalid_value" and error["details"]["path"] == "limits.tool_roundz"
    assert (home / "config.json").read_bytes() == before
    assert tek(home, "config", "set", "--string", "approvals.default", "deny").returncode == 0
    assert tek(home, "config", "unset", "approvals.default").returncode == 0
    assert tek(home, "config", "get", "approvals.default").stdout.strip() == "ask"


def test_validate_checks_a_file_and_names_what_is_wrong(home: Path) -> None:
    good = home / "good.json"
    good.write_text(json.dumps({"gateway": {"journal_keep_events": 10}}))
    result = tek(home, "config", "validate", str(good))
    assert result.returncode == 0 and "1->2" in result.stdout
    bad = home / "bad.json"
    bad.write_text(json.dumps({"config_version": 2, "models": {"m": {"provider": "x"}}}))
    result = tek(home, "config", "validate", str(bad))
    assert result.returncode == 1 and "models.m" in result.stderr
    assert tek(home, "config", "validate", str(home / "nope.json")).returncode == 1


def test_config_with_a_running_gateway_is_applied_live(home: Path) -> None:
    assert tek(home, "gateway", "start").returncode == 0
    try:
        done = tek(home, "config", "set", "limits.tool_rounds", "6")
        assert done.returncode == 0 and "applied by" in done.stdout, done.stderr
        editor = _editor(home)
        env = {"EDITOR": editor, "ROUNDS": "9"}
        edited = _tek_env(home, env, "config", "edit")
        assert edited.returncode == 0 and "version 2" in edited.stdout, edited.stderr
        bad = _tek_env(home, {**env, "ROUNDS": "-1"}, "config", "edit", stdin="n\n")
        assert bad.returncode == 1 and "limits.tool_rounds" in bad.stderr
        assert tek(home, "config", "get", "limits.tool_rounds").stdout.strip() == "9"
        assert not list(home.glob(".config.edit-*"))  # the draft held secrets: it is gone
        listed = json.loads(tek(home, "--json", "config", "backups").stdout)["backups"]
        assert len(listed) == 2
        restored = tek(home, "config", "restore", listed[-1]["name"])
        assert restored.returncode == 0 and "version 3" in restored.stdout
        assert tek(home, "config", "get", "limits.tool_rounds").stdout.strip() == "6"
    finally:
        assert tek(home, "gateway", "stop").returncode == 0


def test_usage_errors_exit_2(home: Path) -> None:
    assert tek(home, "config", "set", "limits.tool_rounds").returncode == 2
    assert tek(home, "config", "frobnicate").returncode == 2


def _tek_env(home: Path, env: dict[str, str], *args: str, stdin: str = "") -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING", **env),
    )


def test_an_interrupted_setup_resumes_where_it_stopped(home: Path) -> None:
    # provider step answered in full; input ends at the default-model question
    answers = "openai\nlab\nhttp://127.0.0.1:9/v1\nenv\nLAB_KEY\nfast\nqwen\n32768\n"
    first = _tek_env(home, {}, "setup", stdin=answers)
    assert first.returncode != 0
    steps = json.loads((home / "state" / "setup.json").read_text())["steps"]
    assert list(steps) == ["provider"]
    # the rest, and "n" to the closing test of the provider (tests/cli/test_setup_cli.py)
    second = _tek_env(home, {}, "setup", stdin="fast\ndeny\nn\n")
    assert second.returncode == 0, second.stderr
    assert "first provider" not in second.stdout and "default model" in second.stdout
    doc = json.loads((home / "config.json").read_text())
    assert doc["providers"]["lab"] == {
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "LAB_KEY",
    }
    assert doc["models"]["fast"]["model"] == "qwen" and doc["default_model"] == "fast"
    assert doc["approvals"]["default"] == "deny"
    assert "complete" in _tek_env(home, {}, "setup").stdout
    again = _tek_env(home, {}, "setup", "--reset", "--yes")
    assert again.returncode == 0 and "first provider" in again.stdout


def test_after_an_upgrade_only_new_setup_steps_run(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["--home", str(home), "setup", "--yes"])
    assert first.exit_code == 0, first.output
    ran: list[str] = []

    def new_step(ask: Any, config: Any) -> str:
        ran.append("limits")
        config.change("set", path="limits.tool_rounds", value=3)
        return "tool rounds 3"

    upgraded = [*setup_steps.STEPS, setup_steps.Step("limits", 2, "Tool limits", new_step)]
    monkeypatch.setattr(setup_steps, "STEPS", upgraded)
    second = runner.invoke(cli, ["--home", str(home), "setup", "--yes"])
    assert second.exit_code == 0, second.output
    assert ran == ["limits"] and "first provider" not in second.output
    assert json.loads((home / "config.json").read_text())["limits"]["tool_rounds"] == 3


# -- issue 15, item 8 ------------------------------------------------------------------------


def test_a_tcp_endpoint_set_without_a_token_serves_at_the_next_start(home: Path) -> None:
    # tcp without a token means CURVE with the home's keys: the next start binds it, and
    # `tek` (same home) connects with the keys the connection file names
    done = tek(home, "config", "set", "gateway.endpoint", "tcp://127.0.0.1:*")
    assert done.returncode == 0 and "next gateway start: gateway.endpoint" in done.stdout
    assert "is valid" in tek(home, "config", "validate").stdout
    assert tek(home, "gateway", "start").returncode == 0
    try:
        info = json.loads((home / "run" / "gateway.json").read_text())
        assert info["endpoint"].startswith("tcp://127.0.0.1:") and info["auth"] == "curve"
        assert tek(home, "ping").returncode == 0
        # the running gateway refuses what the next start could not bind, as offline does
        refused = tek(home, "config", "set", "gateway.endpoint", "tcp://0.0.0.0:*")
        assert refused.returncode == 1 and "gateway.allow_remote" in refused.stderr
    finally:
        assert tek(home, "gateway", "stop").returncode == 0


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("tcp://127.0.0.1", "tcp://HOST:PORT"),
        ("tcp://127.0.0.1:99999", "tcp://HOST:PORT"),
        ("tcp://0.0.0.0:*", "set gateway.allow_remote to true first"),
        ("localhost:5599", "not an endpoint that tek can reach"),
        ("inproc://tek", "not an endpoint that tek can reach"),
        ("ipc://run/gateway.sock", "must be absolute"),
    ],
)
def test_an_endpoint_the_next_start_could_not_serve_is_refused(
    home: Path, endpoint: str, reason: str
) -> None:
    # each of these was accepted (and `config validate` said "is valid"); the next start
    # then failed: cannot bind, allow_remote, or no `tek` could reach it (inproc)
    assert tek(home, "config", "set", "limits.tool_rounds", "5").returncode == 0
    before = (home / "config.json").read_bytes()
    refused = tek(home, "config", "set", "gateway.endpoint", endpoint)
    assert refused.returncode == 1, refused.stdout
    assert "gateway.endpoint" in refused.stderr and reason in refused.stderr
    assert (home / "config.json").read_bytes() == before
    draft = home / "draft.json"
    draft.write_text(json.dumps({"config_version": 2, "gateway": {"endpoint": endpoint}}))
    invalid = tek(home, "config", "validate", str(draft))
    assert invalid.returncode == 1 and reason in invalid.stderr


def test_allow_remote_makes_an_outside_bind_acceptable(home: Path) -> None:
    wide = json.dumps({"endpoint": "tcp://0.0.0.0:*", "allow_remote": True})
    assert tek(home, "config", "set", "gateway", wide).returncode == 0
    token = json.dumps({"endpoint": "tcp://0.0.0.0:*", "allow_remote": True, "auth": "token"})
    refused = tek(home, "config", "set", "gateway", token)
    assert refused.returncode == 1 and "loopback only" in refused.stderr


def _newer_file_over_a_backup(home: Path) -> tuple[bytes, str]:
    """config.json from a newer tek, and the name of a backup this tek wrote."""
    assert tek(home, "config", "set", "limits.tool_rounds", "5").returncode == 0
    (backup,) = json.loads(tek(home, "--json", "config", "backups").stdout)["backups"]
    newer = json.dumps({"config_version": 99, "limits": {"tool_rounds": 7}}).encode()
    (home / "config.json").write_bytes(newer)
    return newer, backup["name"]


def test_restore_works_over_a_newer_file_as_its_error_advises(home: Path) -> None:
    newer, name = _newer_file_over_a_backup(home)
    refused = tek(home, "config", "set", "limits.tool_rounds", "6")
    assert refused.returncode == 1 and "`tek config restore NAME`" in refused.stderr
    assert (home / "config.json").read_bytes() == newer  # never overwritten by a change
    restored = tek(home, "config", "restore", name)  # was refused with the same conflict
    assert restored.returncode == 0, restored.stderr
    assert json.loads((home / "config.json").read_text())["limits"] == {"tool_rounds": 5}
    kept = json.loads(tek(home, "--json", "config", "backups").stdout)["backups"]
    (newer_backup,) = [b for b in kept if b["kind"] == "newer"]
    assert (home / "backups" / newer_backup["name"]).read_bytes() == newer
    assert "(from a newer tek)" in tek(home, "config", "backups").stdout
    assert tek(home, "config", "set", "limits.tool_rounds", "6").returncode == 0


def test_restore_over_a_newer_file_through_a_running_gateway(home: Path) -> None:
    newer, name = _newer_file_over_a_backup(home)
    assert tek(home, "gateway", "start").returncode == 0
    try:
        got = json.loads(tek(home, "--json", "config", "get", "limits.tool_rounds").stdout)
        assert got["source"] == f"backup {name}" and "newer tek" in got["problem"]
        # the backup in force is the one restored: the file is still mended
        restored = tek(home, "config", "restore", name)
        assert restored.returncode == 0, restored.stderr
        assert json.loads((home / "config.json").read_text())["limits"] == {"tool_rounds": 5}
        got = json.loads(tek(home, "--json", "config", "get", "limits.tool_rounds").stdout)
        assert got["source"] == "file" and "problem" not in got
        done = tek(home, "config", "set", "limits.tool_rounds", "6")
        assert done.returncode == 0 and "applied by" in done.stdout, done.stderr
    finally:
        assert tek(home, "gateway", "stop").returncode == 0
    assert newer in [p.read_bytes() for p in (home / "backups").glob("*-newer.json")]


def test_negative_numbers_are_values_without_a_double_dash(home: Path) -> None:
    refused = tek(home, "config", "set", "limits.tool_rounds", "-5")  # was: No such option
    assert refused.returncode == 1 and "a value >= 1" in refused.stderr, refused.stderr
    as_json = tek(home, "--json", "config", "set", "limits.session_idle_s", "-0.5")
    assert json.loads(as_json.stdout)["error"]["details"]["path"] == "limits.session_idle_s"
    done = tek(home, "config", "set", "--string", "models.local.model", "-5")
    assert done.returncode == 0, done.stderr
    assert tek(home, "config", "get", "models.local.model").stdout.strip() == "-5"
    assert tek(home, "config", "set", "limits.tool_rounds", "--frobnicate").returncode == 2


def test_an_unknown_key_is_answered_with_the_keys_there_and_the_closest(home: Path) -> None:
    for args, wrong, close, level in [
        (["set", "limits.tool_roundz", "5"], "limits.tool_roundz", "tool_rounds", "in limits: one"),
        (["set", "limitz.tool_rounds", "5"], "limitz", "limits", "top level: one"),
        (
            ["set", "gateway.supervison.x", "1"],
            "gateway.supervison",
            "supervision",
            "in gateway: one",
        ),
        (["unset", "limits.tool_roundz"], "limits.tool_roundz", "tool_rounds", "in limits: one"),
        (["get", "limits.tool_roundz"], "limits.tool_roundz", "tool_rounds", "there is:"),
    ]:
        refused = tek(home, "config", *args)
        assert refused.returncode == 1, args
        assert wrong in refused.stderr and f"did you mean {close!r}?" in refused.stderr, args
        assert level in refused.stderr, args
    assert not (home / "config.json").exists()


def test_validate_reports_every_error_one_per_line(home: Path) -> None:
    bad = home / "bad.json"
    doc = {
        "config_version": 2,
        "limits": {"tool_rounds": "many", "session_queue": 0},
        "approvals": {"default": "sometimes"},
    }
    bad.write_text(json.dumps(doc))
    result = tek(home, "config", "validate", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].endswith(f"3 problems in {bad}:"), result.stderr
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "approvals.default",
        "limits.session_queue",
        "limits.tool_rounds",
    ]
    as_json = json.loads(tek(home, "--json", "config", "validate", str(bad)).stdout)
    assert len(as_json["error"]["details"]["errors"]) == 3
    unknown = home / "unknown.json"
    unknown.write_text(json.dumps({"config_version": 2, "limits": {"tool_roundz": 5}}))
    kept = tek(home, "config", "validate", str(unknown))
    assert kept.returncode == 0 and "is valid" in kept.stdout
    assert "limits.tool_roundz" in kept.stderr and "did you mean 'tool_rounds'?" in kept.stderr
