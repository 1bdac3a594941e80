"""`tek procs rm ID...` and `tek providers reset NAME [--model M]` (issue 15, item 5), through
the real `tek` against a real gateway process; bad input is a clear error and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tek_actors.testing import GatewayProcess, write_config
from tek_actors.testing.fake_providers import FakeProvider
from tests.cli.test_cli import tek
from tests.providers.test_breakers import two_models
from tests.waiting import until

pytestmark = pytest.mark.slow


def _ids(home: Path) -> list[str]:
    return [p["id"] for p in json.loads(tek(home, "--json", "procs", "list").stdout)["items"]]


def _state(home: Path, proc_id: str) -> str:
    items = json.loads(tek(home, "--json", "procs", "list").stdout)["items"]
    return str(next(p["state"] for p in items if p["id"] == proc_id))


def _start(home: Path, cwd: Path, *argv: str) -> str:
    started = tek(home, "--json", "procs", "run", "--cwd", str(cwd), "--", *argv)
    assert started.returncode == 0, started.stderr
    return str(json.loads(started.stdout)["id"])


def test_procs_rm(home: Path, tmp_path: Path) -> None:
    with GatewayProcess(home):
        first, second = _start(home, tmp_path, "echo", "a"), _start(home, tmp_path, "echo", "b")
        running = _start(home, tmp_path, "sleep", "60")
        for proc_id in (first, second):
            until(lambda p=proc_id: _state(home, p) == "exited", f"{proc_id} exited")  # type: ignore[misc]
        removed = tek(home, "procs", "rm", first, second)
        assert removed.returncode == 0, removed.stderr
        assert removed.stdout.splitlines() == [f"removed {first}", f"removed {second}"]
        assert _ids(home) == [running]
        gone = tek(home, "procs", "logs", first)
        assert gone.returncode == 1 and gone.stderr.startswith("error: not_found: ")
        refused = tek(home, "procs", "rm", running)
        assert refused.returncode == 1 and refused.stderr.startswith("error: conflict: ")
        assert "kill it first" in refused.stderr
        unknown = tek(home, "--json", "procs", "rm", "p-nope")
        assert unknown.returncode == 1
        assert json.loads(unknown.stdout)["error"]["code"] == "not_found"
        too_long = tek(home, "procs", "rm", "p" * 100)
        assert too_long.returncode == 1 and "invalid_request" in too_long.stderr
        assert tek(home, "procs", "rm").returncode == 2  # no ID: usage
        assert _ids(home) == [running]  # none of that changed anything
        assert tek(home, "procs", "kill", running, "--signal", "KILL").returncode == 0


@pytest.fixture
def limited() -> Iterator[FakeProvider]:
    """A provider whose first answer is a 429 with a long Retry-After."""
    with FakeProvider("openai") as server:
        server.script({"status": 429, "headers": {"retry-after": "900"}})
        yield server


def test_providers_reset(home: Path, limited: FakeProvider) -> None:
    write_config(home, two_models(limited))
    with GatewayProcess(home) as gateway:
        with gateway.client() as client:
            messages = [{"role": "user", "content": "hi"}]
            assert client.call("providers.complete", {"messages": messages})["model"] == "other"
        listed = json.loads(tek(home, "--json", "providers", "list").stdout)
        assert listed["providers"]["p1"]["model_states"]["m1"] == "rate_limited"
        for args, said in (
            (["p9"], "there is no provider 'p9'"),
            (["p1", "--model", "m9"], "provider 'p1' has no model 'm9'"),
        ):
            missing = tek(home, "providers", "reset", *args)
            assert missing.returncode == 1 and missing.stderr.startswith("error: not_found: ")
            assert said in missing.stderr
        assert tek(home, "providers", "reset").returncode == 2
        empty = tek(home, "providers", "reset", "p1", "--model", "")
        assert empty.returncode == 1 and "invalid_request" in empty.stderr
        unchanged = json.loads(tek(home, "--json", "providers", "list").stdout)
        assert unchanged["providers"]["p1"]["model_states"]["m1"] == "rate_limited"
        done = tek(home, "providers", "reset", "p1", "--model", "m1")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "p1 model m1: breaker closed (healthy)\n"
        after = json.loads(tek(home, "--json", "providers", "list").stdout)
        assert after["providers"]["p1"]["model_states"] == {"m1": "healthy", "m2": "healthy"}
        again = tek(home, "providers", "reset", "p1")
        assert again.stdout == "p1: breaker was closed already (healthy)\n"
