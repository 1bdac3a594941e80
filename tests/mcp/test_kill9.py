"""kill -9 of the real gateway while an MCP server runs a session's call.

The server is the gateway's child (its pipes die with it), so after the restart it is started
again. The call's intent was durable before it was sent: a call that may change something is
then reported `unknown` and never sent again; one the server annotated read-only (or
idempotent) is sent again, once, and completes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import psutil
import pytest

from tek_actors.testing import GatewayProcess, write_config
from tests.mcp.conftest import (
    final_answer,
    marks,
    send_tool_call,
    server_config,
    tool_results,
    until_state,
)
from tests.waiting import until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _kill9_during(home: Path, work: Path, tool: str, seconds: float) -> tuple[str, int]:
    """A session whose call of `tool` runs on the server when the gateway is killed: (session
    id, the old server's pid)."""
    write_config(
        home,
        {
            "approvals": {"tools": {f"mcp__t__{tool}": "auto"}},
            "mcp": {"servers": {"t": server_config(work / "marks")}},
        },
    )
    gateway = GatewayProcess(home).start()
    try:
        with gateway.client(timeout=30) as client:
            old = until_state(client, "running")
            session = client.call("sessions.create", {"cwd": str(work)})
            send_tool_call(client, session["id"], f"mcp__t__{tool}", {"seconds": seconds})
            until(lambda: f"{tool} start {seconds}" in marks(work / "marks"), "the call running")
    finally:
        gateway.kill9()  # also when the above failed: no gateway outlives the test
    return session["id"], old["pid"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_call_that_may_change_something_is_unknown_after_kill9_and_ran_once(
    home: Path, tmp_path: Path
) -> None:
    session_id, old_pid = _kill9_during(home, tmp_path, "change", 60.0)
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            final_answer(client, session_id, 0)
            [result] = tool_results(client, session_id)
            assert result["status"] == "unknown"
            told = json.loads(result["text"])
            assert "unknown" in told["error"] and "not run again" in told["error"]
            [approval] = client.call("approvals.list", {"session": session_id})["items"]
            assert approval["status"] == "unknown"
            until(lambda: _gone(old_pid), "the old server ended")
    finally:
        assert again.terminate() == 0
    assert [m for m in marks(tmp_path / "marks") if " start " in m] == ["change start 60.0"]


def test_a_read_only_call_is_sent_again_after_kill9_and_completes(
    home: Path, tmp_path: Path
) -> None:
    session_id, _ = _kill9_during(home, tmp_path, "look", 1.0)
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            final_answer(client, session_id, 0)
            [result] = tool_results(client, session_id)
            assert result["status"] == "executed"
            assert json.loads(result["text"]) == {"output": "look slept 1.0"}
    finally:
        assert again.terminate() == 0
    seen = marks(tmp_path / "marks")
    assert [m for m in seen if " start " in m] == ["look start 1.0", "look start 1.0"]
    assert seen[-1] == "look done 1.0"


@pytest.mark.parametrize("seed", [1301, 1302])
def test_random_kill_points_never_run_a_changing_call_twice(
    home: Path, tmp_path: Path, seed: int
) -> None:
    """The gateway dies at a random instant of a call's life, from before it is sent to after
    its result; whatever the instant, the call is on the server at most once, and the session
    ends with its result or with `unknown`, never without an answer."""
    rng = random.Random(seed)
    write_config(
        home,
        {
            "approvals": {"tools": {"mcp__t__change": "auto"}},
            "mcp": {"servers": {"t": server_config(tmp_path / "marks")}},
        },
    )
    gateway = GatewayProcess(home).start()
    try:
        with gateway.client(timeout=30) as client:
            until_state(client, "running")
            session = client.call("sessions.create", {"cwd": str(tmp_path)})
            send_tool_call(client, session["id"], "mcp__t__change", {"seconds": 0.2})
            until(lambda: rng.random() < 0.02 or tool_results(client, session["id"]), "a kill")
    finally:
        gateway.kill9()  # also when the above failed: no gateway outlives the test
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            final_answer(client, session["id"], 0)
            [result] = tool_results(client, session["id"])
            assert result["status"] in ("executed", "unknown"), result
    finally:
        assert again.terminate() == 0
    starts = [m for m in marks(tmp_path / "marks") if m.startswith("change start")]
    assert len(starts) <= 1
    if result["status"] == "executed":
        assert starts == ["change start 0.2"]
