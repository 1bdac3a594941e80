"""kill -9 of the real gateway while a session's tool call runs.

The tool's process outlives the gateway (it is never the gateway's child). After the restart
the session resumes its round from the approvals' record, without being asked: if the process
ended normally meanwhile, the model gets its exit code and output; if the process was lost too,
the model is told the outcome is unknown. Either way the tool ran once and is never re-run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client
from tek_actors.testing import GatewayProcess, write_config

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

# Marks that it ran, then waits for the test's `go` file (or to be killed).
SCRIPT = "echo ran >> marker.txt; echo started; while [ ! -e go ]; do sleep 0.01; done; echo done"


def _start_tool_then_kill9(home: Path, work: Path) -> tuple[str, dict[str, Any]]:
    """A session whose tool call is running when the gateway is killed: (session id, the
    tool's process record)."""
    write_config(home, {"approvals": {"tools": {"shell": "auto"}}})
    gateway = GatewayProcess(home).start()
    with gateway.client(timeout=30) as client:
        session = client.call("sessions.create", {"cwd": str(work)})
        client.hello(topics=["approval.attached"])
        text = "tool: shell " + json.dumps({"argv": ["sh", "-c", SCRIPT]})
        client.call("sessions.send", {"id": session["id"], "text": text})
        event = client.next_event(30)  # the call is running and its process is known
        assert event is not None and event["event"] == "approval.attached"
        proc = client.call("procs.get", {"id": event["data"]["proc_id"]})
        gateway.kill9()
    return session["id"], proc


def _final_answer(client: Client, session_id: str) -> dict[str, Any]:
    client.hello(since_seq=0, topics=["session.message", "session.error"])
    while True:
        event = client.next_event(30)
        assert event is not None, "the turn did not complete after the restart"
        data = event["data"]
        if data.get("session") == session_id and not data.get("tool_calls"):
            return dict(data)


def _tool_results(client: Client, session_id: str) -> list[dict[str, Any]]:
    entries = client.call("sessions.get", {"id": session_id})["entries"]
    return [e for e in entries if e["role"] == "tool"]


def test_a_tool_that_ends_while_the_gateway_is_down_reports_its_output(
    home: Path, tmp_path: Path
) -> None:
    session_id, _ = _start_tool_then_kill9(home, tmp_path)
    (tmp_path / "go").touch()  # the tool finishes while no gateway runs
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            answer = _final_answer(client, session_id)
            [result] = _tool_results(client, session_id)
            assert result["status"] == "executed"
            assert json.loads(result["text"]) == {"exit_code": 0, "output": "started\ndone"}
            assert "started\\ndone" in answer["text"]
    finally:
        assert again.terminate() == 0
    assert (tmp_path / "marker.txt").read_text() == "ran\n"  # once, never again


def test_a_tool_lost_with_the_gateway_is_reported_unknown_and_not_rerun(
    home: Path, tmp_path: Path
) -> None:
    session_id, proc = _start_tool_then_kill9(home, tmp_path)
    os.kill(proc["runner_pid"], signal.SIGKILL)  # nobody will record how it ended
    os.killpg(proc["pgid"], signal.SIGKILL)
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            answer = _final_answer(client, session_id)
            [result] = _tool_results(client, session_id)
            assert result["status"] == "unknown"
            told = json.loads(result["text"])
            assert "unknown" in told["error"] and "not run again" in told["error"]
            assert "unknown" in answer["text"]  # the model was told so
            approvals = client.call("approvals.list", {"session": session_id})["items"]
            assert [a["status"] for a in approvals] == ["unknown"]
    finally:
        assert again.terminate() == 0
    assert (tmp_path / "marker.txt").read_text() == "ran\n"


@pytest.mark.parametrize(
    ("point", "tool", "arguments"),
    [
        ("tools.begun", "shell", {"argv": ["sh", "-c", "echo ran >> marker.txt; echo out"]}),
        ("procs.intended", "shell", {"argv": ["sh", "-c", "echo ran >> marker.txt; echo out"]}),
        ("procs.spawned", "shell", {"argv": ["sh", "-c", "echo ran >> marker.txt; echo out"]}),
        ("tools.write_intended", "write_file", {"path": "marker.txt", "content": "ran\n"}),
        ("tools.written", "write_file", {"path": "marker.txt", "content": "ran\n"}),
        ("tools.begun", "write_file", {"path": "marker.txt", "content": "ran\n", "append": True}),
        ("tools.written", "write_file", {"path": "marker.txt", "content": "ran\n", "append": True}),
    ],
)
def test_a_call_cut_short_anywhere_between_running_and_its_record_runs_once(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    """The gateway dies at a named instant of a running call: after the restart the session
    drives the call on through its effect's key, so it ran once and its result is known."""
    write_config(home, {"approvals": {"tools": {"shell": "auto", "write_file": "auto"}}})
    monkeypatch.setenv("TEK_TEST_KILL_AT", point)
    doomed = GatewayProcess(home).start()
    with doomed.client(timeout=30) as client:
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        text = f"tool: {tool} " + json.dumps(arguments)
        client.call("sessions.send", {"id": session["id"], "text": text})
    assert doomed.wait(timeout=30) == -signal.SIGKILL
    monkeypatch.delenv("TEK_TEST_KILL_AT")
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            _final_answer(client, session["id"])
            [result] = _tool_results(client, session["id"])
            assert result["status"] == "executed", result
            [approval] = client.call("approvals.list", {"session": session["id"]})["items"]
            assert approval["status"] == "executed"
    finally:
        assert again.terminate() == 0
    assert (tmp_path / "marker.txt").read_text() == "ran\n"  # once, never again
