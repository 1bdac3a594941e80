"""The tool loop: approval, execution through the process monitor (or in-process for files),
results in the order the model issued the calls, and the bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tek_actors import Client
from tek_actors.runtime import FakeClock
from tek_actors.testing.fake_providers import FakeProvider
from tests.conftest import Start
from tests.sessions.conftest import lab_config, until_restarting


def _events_until_final(client: Client, session_id: str) -> list[dict[str, Any]]:
    """The session's journaled events up to its turn's final answer (or error)."""
    seen = []
    while True:
        event = client.next_event(30)
        assert event is not None, f"no final answer; saw {[e['event'] for e in seen]}"
        data = event["data"]
        if event["seq"] is None or data.get("session") != session_id:
            continue
        seen.append(event)
        final = event["event"] == "session.error" or (
            event["event"] == "session.message" and not data["tool_calls"]
        )
        if final:
            return seen


def _pending_approval(client: Client, session_id: str) -> dict[str, Any]:
    while True:
        event = client.next_event(30)
        assert event is not None, "no approval was requested"
        data = event["data"]
        if event["event"] == "approval.requested" and data["session"] == session_id:
            return dict(data)


def _entries(client: Client, session_id: str) -> list[dict[str, Any]]:
    return list(client.call("sessions.get", {"id": session_id})["entries"])


def test_a_shell_call_waits_for_a_person_runs_once_and_the_model_sees_its_result(
    gateway_with: Start, tmp_path: Path
) -> None:
    _, client = gateway_with()
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    client.hello(topics=["session.*", "approval.*"])
    argv = ["sh", "-c", "echo ran >> marker.txt; echo hello from the tool"]
    text = "tool: shell " + json.dumps({"argv": argv})
    client.call("sessions.send", {"id": session["id"], "text": text})

    asked = _pending_approval(client, session["id"])
    assert asked["tool"] == "shell" and asked["status"] == "pending"  # shell asks by default
    assert asked["arguments"] == {"argv": argv, "cwd": str(tmp_path)}  # exactly what will run
    assert not (tmp_path / "marker.txt").exists()
    client.call("approvals.decide", {"id": asked["id"], "decision": "approve"})

    _events_until_final(client, session["id"])
    entries = _entries(client, session["id"])
    assert [e["role"] for e in entries] == ["user", "assistant", "tool", "assistant"]
    call, result, answer = entries[1]["tool_calls"][0], entries[2], entries[3]
    assert result["tool_call_id"] == call["id"] and result["status"] == "executed"
    assert json.loads(result["text"]) == {"exit_code": 0, "output": "hello from the tool"}
    assert "hello from the tool" in answer["text"] and answer["local"]
    assert (tmp_path / "marker.txt").read_text() == "ran\n"
    done = client.call("approvals.get", {"id": asked["id"]})
    assert done["status"] == "executed" and done["proc_id"] and done["result"]["exit_code"] == 0


def test_results_are_in_call_order_when_the_tools_finish_out_of_order(
    gateway_with: Start, tmp_path: Path
) -> None:
    # The first call can only finish once the second's result is in: the test lets it go then.
    first = ["sh", "-c", "while [ ! -e go ]; do sleep 0.01; done; echo first"]
    second = ["echo", "second"]
    with FakeProvider("openai") as server:
        server.script(
            {
                "tool_calls": [
                    {"id": "c1", "name": "shell", "arguments": {"argv": first}},
                    {"id": "c2", "name": "shell", "arguments": {"argv": second}},
                ]
            },
            {"text": "both ran"},
        )
        _, client = gateway_with(lab_config(server, approvals={"default": "auto"}))
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        client.hello(topics=["session.*"])
        client.call("sessions.send", {"id": session["id"], "text": "run both"})
        while True:
            event = client.next_event(30)
            assert event is not None
            if event["event"] == "session.tool_result":
                assert event["data"]["tool_call_id"] == "c2"
                break
        # finished, journaled, and not yet in the conversation: c1 comes first there
        assert [e["role"] for e in _entries(client, session["id"])] == ["user", "assistant"]
        (tmp_path / "go").touch()
        _events_until_final(client, session["id"])

        entries = _entries(client, session["id"])
        tools = [e for e in entries if e["role"] == "tool"]
        assert [e["tool_call_id"] for e in tools] == ["c1", "c2"]  # as the model issued them
        assert [json.loads(e["text"])["output"] for e in tools] == ["first", "second"]

        asked_again = server.wait_for_requests(2)[1].body["messages"]
        assert [m["role"] for m in asked_again] == ["user", "assistant", "tool", "tool"]
        assert [c["id"] for c in asked_again[1]["tool_calls"]] == ["c1", "c2"]
        assert [m["tool_call_id"] for m in asked_again[2:]] == ["c1", "c2"]
        offered = {t["function"]["name"] for t in server.requests[0].body["tools"]}
        assert offered == {"shell", "read_file", "write_file"}


def test_denied_unknown_and_malformed_calls_are_reported_and_nothing_runs(
    gateway_with: Start, tmp_path: Path
) -> None:
    with FakeProvider("openai") as server:
        touch = ["sh", "-c", "touch ran.txt"]
        server.script(
            {
                "tool_calls": [
                    {"id": "c1", "name": "shell", "arguments": {"argv": touch}},
                    {"id": "c2", "name": "launch_rockets", "arguments": {}},
                    {"id": "c3", "name": "read_file", "arguments": {"path": 7}},
                ]
            },
            {"text": "understood"},
        )
        config = lab_config(server, approvals={"default": "auto", "tools": {"shell": "deny"}})
        _, client = gateway_with(config)
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        client.hello(topics=["session.*"])
        client.call("sessions.send", {"id": session["id"], "text": "try these"})
        _events_until_final(client, session["id"])

    tools = [e for e in _entries(client, session["id"]) if e["role"] == "tool"]
    assert [e["status"] for e in tools] == ["denied", "error", "error"]
    assert "approvals.tools.shell" in json.loads(tools[0]["text"])["error"]
    assert "there is no tool 'launch_rockets'" in json.loads(tools[1]["text"])["error"]
    assert "read_file: bad arguments (path:" in json.loads(tools[2]["text"])["error"]
    assert not (tmp_path / "ran.txt").exists()
    # only the shell call reached the approval actor: the others could not run at all
    assert [a["tool"] for a in client.call("approvals.list", {})["items"]] == ["shell"]


def test_file_tools_resolve_their_paths_and_are_bounded(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {
        "approvals": {"tools": {"read_file": "auto", "write_file": "auto"}},
        "limits": {"tool_output_bytes": 1024},
    }
    _, client = gateway_with(config)
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    (tmp_path / "notes").mkdir()
    client.hello(topics=["session.*"])

    write = {"path": "notes/../notes/a.txt", "content": "line one\n"}
    client.call(
        "sessions.send", {"id": session["id"], "text": f"tool: write_file {json.dumps(write)}"}
    )
    _events_until_final(client, session["id"])
    written = json.loads(_entries(client, session["id"])[2]["text"])
    assert written == {"path": str(tmp_path / "notes" / "a.txt"), "bytes": 9, "append": False}
    assert (tmp_path / "notes" / "a.txt").read_text() == "line one\n"

    (tmp_path / "big.txt").write_text("x" * 5000)
    read = {"path": "big.txt", "offset": 1000}
    client.call(
        "sessions.send", {"id": session["id"], "text": f"tool: read_file {json.dumps(read)}"}
    )
    _events_until_final(client, session["id"])
    got = json.loads(_entries(client, session["id"])[6]["text"])
    assert got["path"] == str(tmp_path / "big.txt") and got["size"] == 5000
    assert got["content"] == "x" * 1024 and got["truncated"] is True and got["offset"] == 1000

    too_big = {"path": "c.txt", "content": "y" * 2000}
    client.call(
        "sessions.send", {"id": session["id"], "text": f"tool: write_file {json.dumps(too_big)}"}
    )
    _events_until_final(client, session["id"])
    refused = _entries(client, session["id"])[10]
    assert refused["status"] == "error" and "limits.tool_output_bytes" in refused["text"]
    assert not (tmp_path / "c.txt").exists()


def test_a_tool_from_config_runs_its_command_with_the_arguments(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {
        "tools": {
            "greet": {
                "command": ["echo", "hello,", "{name}"],
                "description": "Greet someone",
                "parameters": {"name": {"type": "string"}},
            }
        },
        "approvals": {"tools": {"greet": "auto"}},
    }
    _, client = gateway_with(config)
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    client.hello(topics=["session.*"])
    client.call(
        "sessions.send", {"id": session["id"], "text": 'tool: greet {"name": "Ann; rm -rf /"}'}
    )
    _events_until_final(client, session["id"])
    result = _entries(client, session["id"])[2]
    # one argument, never a shell: the semicolon is just text
    assert json.loads(result["text"]) == {"exit_code": 0, "output": "hello, Ann; rm -rf /"}
    approval = client.call("approvals.list", {})["items"][0]
    assert approval["arguments"]["argv"] == ["echo", "hello,", "Ann; rm -rf /"]


def test_tool_rounds_per_turn_are_bounded(gateway_with: Start, tmp_path: Path) -> None:
    again = {"tool_calls": [{"id": "c", "name": "shell", "arguments": {"argv": ["true"]}}]}
    with FakeProvider("openai") as server:
        server.script(again, again, again)
        config = lab_config(server, approvals={"default": "auto"}, limits={"tool_rounds": 2})
        _, client = gateway_with(config)
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        client.hello(topics=["session.*"])
        client.call("sessions.send", {"id": session["id"], "text": "loop forever"})
        events = _events_until_final(client, session["id"])
        assert len(server.requests) == 2
    error = events[-1]["data"]
    assert error["role"] == "error" and error["error"]["details"]["kind"] == "tool_rounds"
    assert "limits.tool_rounds is 2" in error["text"]
    roles = [e["role"] for e in _entries(client, session["id"])]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "error"]


def test_a_switch_waits_for_the_outstanding_tool_call(gateway_with: Start, tmp_path: Path) -> None:
    _, client = gateway_with()
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    client.hello(topics=["session.*", "approval.*"])
    client.call("sessions.send", {"id": session["id"], "text": 'tool: shell {"argv": ["true"]}'})
    asked = _pending_approval(client, session["id"])

    switch = {"id": session["id"], "model": "local", "mode": "carry_over"}
    switched = client.submit("sessions.switch", switch, timeout=60)
    client.call("sessions.get", {"id": session["id"]})  # handled after the switch arrived
    assert not switched.done()  # the tool call is still outstanding
    client.call("approvals.decide", {"id": asked["id"], "decision": "approve"})
    events = _events_until_final(client, session["id"])
    assert switched.result(30)["switches"] == 1
    names = [e["event"] for e in events]
    assert names.index("session.tool_result") < names.index("session.message", 1)


def test_a_decision_reaches_the_session_across_a_restart_of_the_approval_actor(
    gateway_with: Start, tmp_path: Path
) -> None:
    clock = FakeClock()
    config = {"gateway": {"supervision": {"backoff_jitter": 0.0}}}
    _, client = gateway_with(config, clock=clock)
    (tmp_path / "note.txt").write_text("kept")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    client.hello(topics=["session.*", "approval.*", "gateway.actor_restarted"])
    client.call(
        "sessions.send", {"id": session["id"], "text": 'tool: read_file {"path": "note.txt"}'}
    )
    asked = _pending_approval(client, session["id"])

    client.call("test.crash", {"actor": "approvals"})  # it forgets who watched the request
    until_restarting(client, "approvals")
    clock.advance(0.5)
    while (event := client.next_event(10)) is not None:
        if event["event"] == "gateway.actor_restarted":
            break
    client.call("approvals.decide", {"id": asked["id"], "decision": "approve"})
    clock.advance(5.0)  # the session sends its watch again; the decision is there
    _events_until_final(client, session["id"])
    result = json.loads(_entries(client, session["id"])[2]["text"])
    assert result["content"] == "kept" and result["path"] == str(tmp_path / "note.txt")
