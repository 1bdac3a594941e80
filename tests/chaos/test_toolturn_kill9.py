"""kill -9 of the real gateway just after a tool call's merged request-and-begin.

An auto-approved call is requested and marked running by one `approvals.request` (with
`begin`), in one commit. `tools.begun` is the point between what that commit made durable and
what was not done yet (nothing started): the gateway dies there. On disk the call must be
requested and running together, with no start of its process; after the restart the session
drives it on through the call's key, so the tool runs exactly once."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import msgpack
import pytest

from tek_actors.testing import GatewayProcess, write_config

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _journal(home: Path) -> list[tuple[int, float, str, str, dict[str, object]]]:
    """(seq, ts, actor, type, data) of every event, read from the file the gateway left."""
    con = sqlite3.connect(f"file:{home / 'state' / 'journal.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT seq, ts, actor, type, data FROM events ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(s, ts, a, t, msgpack.unpackb(d, raw=False)) for s, ts, a, t, d in rows]


def test_a_kill_after_the_merged_request_and_begin_runs_the_call_once(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(home, {"approvals": {"tools": {"shell": "auto"}}})
    argv = ["sh", "-c", "echo ran >> marker.txt; echo out"]
    monkeypatch.setenv("TEK_TEST_KILL_AT", "tools.begun")
    doomed = GatewayProcess(home).start()
    with doomed.client(timeout=30) as client:
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        text = "tool: shell " + json.dumps({"argv": argv})
        client.call("sessions.send", {"id": session["id"], "text": text})
    assert doomed.wait(timeout=30) == -signal.SIGKILL
    monkeypatch.delenv("TEK_TEST_KILL_AT")

    events = _journal(home)
    approval = [e for e in events if e[2] == "approvals" and e[3].startswith("approval.")]
    assert [e[3] for e in approval if e[3] != "approval.policy"] == [
        "approval.requested",
        "approval.running",
    ]
    requested, running = approval[-2:]
    assert running[0] == requested[0] + 1 and running[1] == requested[1]  # one transaction
    assert requested[4]["status"] == "approved" and requested[4]["decided_by"] == "policy"
    assert not [e for e in events if e[2] == "procs"]  # nothing was started
    assert not (tmp_path / "marker.txt").exists()

    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as client:
            client.hello(since_seq=0, topics=["session.message", "session.error"])
            while True:
                event = client.next_event(30)
                assert event is not None, "the turn did not complete after the restart"
                data = event["data"]
                if data.get("session") == session["id"] and not data.get("tool_calls"):
                    break
            entries = client.call("sessions.get", {"id": session["id"]})["entries"]
            [result] = [e for e in entries if e["role"] == "tool"]
            assert result["status"] == "executed", result
            assert json.loads(result["text"]) == {"exit_code": 0, "output": "out"}
            [item] = client.call("approvals.list", {"session": session["id"]})["items"]
            assert item["id"] == requested[4]["id"] and item["status"] == "executed"
    finally:
        assert again.terminate() == 0
    assert (tmp_path / "marker.txt").read_text() == "ran\n"  # once, never again
