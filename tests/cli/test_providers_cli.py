"""`tek providers list|status|test` against a real gateway process and a loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tek_actors.testing import write_config
from tek_actors.testing.fake_providers import FakeProvider
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow


def test_list_status_and_a_live_test(home: Path) -> None:
    with FakeProvider("openai") as server:
        write_config(
            home,
            {
                "providers": {
                    "lab": {
                        "kind": "openai",
                        "base_url": server.base_url,
                        "api_key": "sk-cli-1234567",
                    }
                },
                "models": {"fast": {"provider": "lab", "model": "qwen"}},
            },
        )
        assert tek(home, "gateway", "start").returncode == 0
        try:
            listed = tek(home, "providers", "list")
            assert listed.returncode == 0 and "lab" in listed.stdout and "qwen" in listed.stdout
            assert "sk-cli-1234567" not in listed.stdout
            tested = tek(home, "--json", "providers", "test", "lab")
            result = json.loads(tested.stdout)
            assert tested.returncode == 0 and result["ok"] and result["latency_ms"] > 0
            assert server.requests[0].headers["authorization"] == "Bearer sk-cli-1234567"
            server.script({"status": 401})
            failed = tek(home, "providers", "test", "lab")
            assert failed.returncode == 1 and "auth" in failed.stdout
            status = tek(home, "--json", "providers", "status")
            assert json.loads(status.stdout)["providers"]["lab"]["state"] == "healthy"
            unknown = tek(home, "providers", "test", "nope")
            assert unknown.returncode == 1 and "no provider 'nope'" in unknown.stderr
        finally:
            assert tek(home, "gateway", "stop").returncode == 0
