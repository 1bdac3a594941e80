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
    answers = "openai\nlab\nhttp://127.0.0.1:9/v1\nLAB_KEY\nfast\nqwen\n32768\n"
    first = _tek_env(home, {}, "setup", stdin=answers)
    assert first.returncode != 0
    steps = json.loads((home / "state" / "setup.json").read_text())["steps"]
    assert list(steps) == ["provider"]
    second = _tek_env(home, {}, "setup", stdin="fast\ndeny\n")
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
