"""`tek approvals list|approve|deny|watch` against a real gateway process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow


def _request(home: Path, call: str, argv: list[str]) -> dict[str, Any]:
    from tek_actors import Client

    with Client(home=home, timeout=10) as client:
        payload = {"session": "s1", "tool_call": call, "tool": "shell", "arguments": {"argv": argv}}
        result: dict[str, Any] = client.call("approvals.request", payload)
        return result


def test_list_approve_deny_and_watch(home: Path) -> None:
    assert tek(home, "gateway", "start").returncode == 0
    try:
        first = _request(home, "c1", ["make", "test"])
        second = _request(home, "c2", ["rm", "-rf", "build"])
        listed = tek(home, "approvals", "list", "--status", "pending")
        assert listed.returncode == 0 and first["id"] in listed.stdout
        assert "make test" in listed.stdout
        approved = tek(home, "approvals", "approve", first["id"], "--remember")
        assert approved.returncode == 0 and "approved and remembered" in approved.stdout
        denied = tek(home, "--json", "approvals", "deny", second["id"])
        assert json.loads(denied.stdout)["status"] == "denied"
        again = tek(home, "approvals", "approve", second["id"])
        assert again.returncode == 1 and "already denied" in again.stderr
        missing = tek(home, "approvals", "deny", "a-nope")
        assert missing.returncode == 1 and "no approval" in missing.stderr
        # watch: a pending call is asked about; "approve" decides it
        third = _request(home, "c3", ["ls"])
        watcher = subprocess.run(
            [
                sys.executable,
                "-m",
                "tek_actors",
                "--home",
                str(home),
                "approvals",
                "watch",
                "--once",
            ],
            input="approve\n",
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
        )
        assert third["id"] in watcher.stdout and "approved" in watcher.stdout
        status = json.loads(tek(home, "--json", "approvals", "list").stdout)
        assert {i["id"]: i["status"] for i in status["items"]}[third["id"]] == "approved"
    finally:
        assert tek(home, "gateway", "stop").returncode == 0
