"""MCP tools through the whole gateway: listed, offered to the model, approved (by a rule or a
person) or denied, run once with their exact arguments, results back in order; servers that
die, cannot start, change their tools, or take too long."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tek_actors.errors import Conflict, InvalidRequest, InvalidValue, NotFound
from tek_actors.testing.fake_providers import FakeProvider
from tests.conftest import Start
from tests.mcp.conftest import (
    SERVER,
    final_answer,
    marks,
    send_tool_call,
    server_config,
    server_view,
    tool_results,
    until_state,
)
from tests.sessions.conftest import lab_config
from tests.waiting import until


def test_a_servers_tools_are_listed_with_their_schemas_and_annotations(
    gateway_with: Start, tmp_path: Path
) -> None:
    _, client = gateway_with({"mcp": {"servers": {"t": server_config(tmp_path / "marks")}}})
    view = until_state(client, "running")
    tools = {t["name"]: t for t in view["tools"]}
    assert {"echo", "look", "change", "die", "grow", "broken"} <= set(tools)
    assert tools["echo"]["as"] == "mcp__t__echo"
    assert tools["echo"]["description"] == "Say the text back."
    assert tools["echo"]["input_schema"]["properties"]["text"]["type"] == "string"
    assert tools["look"]["annotations"] == {"readOnlyHint": True}  # the wire's names
    assert isinstance(view["pid"], int) and view["restarts"] == 0 and view["last_error"] is None


def test_the_model_is_offered_each_tool_and_an_auto_approved_call_reaches_it(
    gateway_with: Start, tmp_path: Path
) -> None:
    with FakeProvider("openai") as server:
        server.script(
            {"tool_calls": [{"id": "c1", "name": "mcp__t__echo", "arguments": {"text": "a b"}}]},
            {"text": "done"},
        )
        config = lab_config(server, approvals={"tools": {"mcp__t__echo": "auto"}})
        config["mcp"] = {"servers": {"t": server_config(tmp_path / "marks")}}
        _, client = gateway_with(config)
        until_state(client, "running")
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        client.call("sessions.send", {"id": session["id"], "text": "say it"})
        final_answer(client, session["id"], 0)

        offered = {t["function"]["name"]: t["function"] for t in server.requests[0].body["tools"]}
        assert offered["mcp__t__echo"]["parameters"]["required"] == ["text"]
        assert "Say the text back." in offered["mcp__t__echo"]["description"]
        [result] = tool_results(client, session["id"])
        assert result["status"] == "executed"
        assert json.loads(result["text"]) == {"output": "echo: a b"}
        told = server.wait_for_requests(2)[1].body["messages"]
        assert told[-1]["role"] == "tool" and "echo: a b" in told[-1]["content"]
    assert marks(tmp_path / "marks") == ['echo done "a b"']
    [approval] = client.call("approvals.list", {"session": session["id"]})["items"]
    assert approval["tool"] == "mcp__t__echo" and approval["status"] == "executed"
    assert approval["arguments"] == {"server": "t", "tool": "echo", "arguments": {"text": "a b"}}


def test_calls_run_side_by_side_and_their_results_reach_the_model_in_call_order(
    gateway_with: Start, tmp_path: Path
) -> None:
    """The first call finishes last; the model still reads c1's result first. A picture is
    described, not passed on as base64."""
    with FakeProvider("openai") as server:
        server.script(
            {
                "tool_calls": [
                    {"id": "c1", "name": "mcp__t__look", "arguments": {"seconds": 1.0}},
                    {"id": "c2", "name": "mcp__t__picture", "arguments": {}},
                ]
            },
            {"text": "both"},
        )
        config = lab_config(server, approvals={"default": "auto"})
        config["mcp"] = {"servers": {"t": server_config(tmp_path / "marks")}}
        _, client = gateway_with(config)
        until_state(client, "running")
        session = client.call("sessions.create", {"cwd": str(tmp_path)})
        client.call("sessions.send", {"id": session["id"], "text": "go"})
        final_answer(client, session["id"], 0)
        told = server.wait_for_requests(2)[1].body["messages"]
    assert [m.get("tool_call_id") for m in told[2:]] == ["c1", "c2"]
    assert "look slept 1.0" in told[2]["content"]
    picture = told[3]["content"]
    assert "[image content: image/png, about" in picture and "a tiny picture" in picture
    assert "iVBOR" not in picture  # the base64 itself never reaches the model
    assert marks(tmp_path / "marks")[-1] == "look done 1.0"  # c2 finished first


def test_a_person_approves_the_exact_arguments_and_a_denied_call_never_runs(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {"mcp": {"servers": {"t": server_config(tmp_path / "marks")}}}
    _, client = gateway_with(config)
    until_state(client, "running")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    client.hello(topics=["approval.requested"])

    for text, decision in (("yes", "approve"), ("no", "deny")):
        sent = send_tool_call(client, session["id"], "mcp__t__echo", {"text": text})
        event = until(lambda: client.next_event(1), "approval.requested")
        asked = event["data"]
        assert asked["status"] == "pending"  # approvals.default is ask
        assert asked["arguments"] == {"server": "t", "tool": "echo", "arguments": {"text": text}}
        client.call("approvals.decide", {"id": asked["id"], "decision": decision})
        final_answer(client, session["id"], sent)

    executed, denied = tool_results(client, session["id"])
    assert executed["status"] == "executed" and "echo: yes" in executed["text"]
    assert denied["status"] == "denied"
    assert marks(tmp_path / "marks") == ['echo done "yes"']  # the denied one never ran


def test_an_error_result_and_a_call_of_a_tool_nobody_offers_are_reported(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {
        "approvals": {"default": "auto"},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks")}},
    }
    _, client = gateway_with(config)
    until_state(client, "running")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__broken", {})
    final_answer(client, session["id"], sent)
    sent = send_tool_call(client, session["id"], "mcp__nope__echo", {"text": "x"})
    final_answer(client, session["id"], sent)
    broken, nobody = tool_results(client, session["id"])
    assert broken["status"] == "failed" and "broken on purpose" in broken["text"], broken
    assert nobody["status"] == "error" and "'nope' is not configured" in nobody["text"]


def test_a_huge_answer_is_bounded_like_any_tool_output(gateway_with: Start, tmp_path: Path) -> None:
    config = {
        "approvals": {"default": "auto"},
        "limits": {"tool_output_bytes": 4096},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks")}},
    }
    _, client = gateway_with(config)
    until_state(client, "running")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__big", {"size": 500_000})
    final_answer(client, session["id"], sent)
    [result] = tool_results(client, session["id"])
    told = json.loads(result["text"])
    assert result["status"] == "executed" and told["truncated"] is True
    assert len(told["output"].encode()) < 4096 + 100 and "bytes left out" in told["output"]


def test_a_server_killed_mid_call_gives_a_visible_error_is_restarted_and_works_after(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {
        "approvals": {"default": "auto"},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks")}},
    }
    _, client = gateway_with(config)
    first = until_state(client, "running")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__die", {})
    final_answer(client, session["id"], sent)
    [died] = tool_results(client, session["id"])
    assert died["status"] == "failed"
    assert "stopped while die ran" in died["text"] and "not run again" in died["text"]

    again = until_state(client, "running", restarts=1)
    assert again["pid"] != first["pid"] and again["last_error"]
    sent = send_tool_call(client, session["id"], "mcp__t__echo", {"text": "after"})
    final_answer(client, session["id"], sent)
    assert "echo: after" in tool_results(client, session["id"])[-1]["text"]
    assert marks(tmp_path / "marks") == ["die start", 'echo done "after"']  # die ran once


def test_a_call_past_its_timeout_is_cancelled_on_the_server_and_reported(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {
        "approvals": {"default": "auto"},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks", timeout_s=0.5)}},
    }
    _, client = gateway_with(config)
    until_state(client, "running")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__change", {"seconds": 30})
    final_answer(client, session["id"], sent)
    [result] = tool_results(client, session["id"])
    assert result["status"] == "failed"
    told = json.loads(result["text"])
    assert told["timed_out"] is True and "within 0.5 s" in told["error"]
    cancelled = ["change start 30.0", "change cancelled 30.0"]
    until(lambda: marks(tmp_path / "marks") == cancelled, "the server saw the cancel")


def test_a_server_that_cannot_start_is_failed_with_its_stderr_and_the_gateway_stays_up(
    gateway_with: Start, tmp_path: Path
) -> None:
    config = {"mcp": {"servers": {"t": server_config(tmp_path / "marks", "--fail-start")}}}
    _, client = gateway_with(config)
    view = until_state(client, "failed", timeout=60)  # five ends, with backoff between
    assert view["restarts"] >= 1 and view["pid"] is None and view["tools"] == []
    assert any("refuses to start" in line for line in view["stderr"])
    assert client.call("gateway.status", {})["state"] == "running"
    with pytest.raises(Conflict, match="is failed"):
        client.call("mcp.call", {"server": "t", "tool": "echo", "key": "k1"})


def test_a_program_that_does_not_exist_is_named(gateway_with: Start) -> None:
    config = {"mcp": {"servers": {"t": {"command": ["no-such-mcp-server-xyz"]}}}}
    _, client = gateway_with(config)
    view = until_state(client, "failed", timeout=60)
    assert "no program 'no-such-mcp-server-xyz'" in view["last_error"]


def test_tools_list_changed_is_honoured(gateway_with: Start, tmp_path: Path) -> None:
    config = {
        "approvals": {"default": "auto"},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks")}},
    }
    _, client = gateway_with(config)
    until_state(client, "running")
    client.hello(topics=["mcp.*"])
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__grow", {})
    final_answer(client, session["id"], sent)

    def fresh_listed() -> bool:
        return "fresh" in [t["name"] for t in server_view(client)["tools"]]

    until(fresh_listed, "the new tool listed")
    changed = until(lambda: client.next_event(1), "an mcp.server event")
    while "fresh" not in changed["data"].get("tools", []):
        changed = until(lambda: client.next_event(1), "the mcp.server event naming fresh")
    sent = send_tool_call(client, session["id"], "mcp__t__fresh", {})
    final_answer(client, session["id"], sent)
    assert "fresh!" in tool_results(client, session["id"])[-1]["text"]


def test_restart_disable_and_remove(gateway_with: Start, tmp_path: Path) -> None:
    _, client = gateway_with({"mcp": {"servers": {"t": server_config(tmp_path / "marks")}}})
    first = until_state(client, "running")
    restarted = client.call("mcp.restart", {"name": "t"})
    assert restarted["state"] == "running" and restarted["pid"] != first["pid"]
    assert restarted["restarts"] == 1
    client.call("config.set", {"path": "mcp.servers.t.enabled", "value": False})
    assert server_view(client)["state"] == "disabled"
    with pytest.raises(Conflict, match="disabled"):
        client.call("mcp.restart", {"name": "t"})
    client.call("config.unset", {"path": "mcp.servers.t"})
    assert client.call("mcp.list", {})["servers"] == {}


def test_bad_requests_change_nothing(gateway_with: Start, tmp_path: Path) -> None:
    _, client = gateway_with({"mcp": {"servers": {"t": server_config(tmp_path / "marks")}}})
    until_state(client, "running")
    with pytest.raises(NotFound, match="no MCP server 'x'"):
        client.call("mcp.restart", {"name": "x"})
    with pytest.raises(InvalidRequest):
        client.call("mcp.restart", {"name": 3})
    with pytest.raises(InvalidRequest):
        client.call("mcp.call", {"server": "t", "tool": "echo"})  # no key
    with pytest.raises(NotFound, match="no tool 'nope'"):
        client.call("mcp.call", {"server": "t", "tool": "nope", "key": "k"})
    one = {"server": "t", "tool": "echo", "arguments": {"text": "one"}, "key": "k2"}
    assert client.call("mcp.call", one)["output"] == "echo: one"
    assert client.call("mcp.call", one)["output"] == "echo: one"  # the same call: not run again
    with pytest.raises(Conflict, match="belongs to another call"):  # a key taken for another
        client.call("mcp.call", {**one, "arguments": {"text": "two"}})
    for value in (
        {"command": []},
        {"command": ["x"], "url": "http://127.0.0.1:1/mcp"},
        {},
        {"command": ["x"], "cwd": "relative"},
        {"command": ["x"], "headers": {"A": "b"}},
        {"command": ["x"], "timeout_s": 0},
    ):
        with pytest.raises(InvalidValue, match=r"mcp\.servers\.t2"):
            client.call("config.set", {"path": "mcp.servers.t2", "value": value})
    with pytest.raises(InvalidValue, match=r"mcp\.servers"):
        client.call("config.set", {"path": "mcp.servers.a__b", "value": {"command": ["x"]}})
    assert list(client.call("mcp.list", {})["servers"]) == ["t"]
    assert marks(tmp_path / "marks") == ['echo done "one"']


def test_secrets_in_env_and_headers_are_redacted(gateway_with: Start, tmp_path: Path) -> None:
    value = server_config(tmp_path / "marks", env={"GITHUB_TOKEN": "s3cret", "MODE": "x"})
    _, client = gateway_with({"mcp": {"servers": {"t": value}}})
    got = client.call("config.get", {"path": "mcp.servers.t"})["value"]
    assert got["env"] == {"GITHUB_TOKEN": "<redacted>", "MODE": "<redacted>"}
    whole = json.dumps(client.call("config.get", {"path": None}))
    assert "s3cret" not in whole


def test_a_streamable_http_server_with_headers(gateway_with: Start, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port on loopback for the server to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(tmp_path / "marks"), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        until(listening, "the HTTP server listening")
        config = {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": "Bearer x"}}
        _, client = gateway_with({"mcp": {"servers": {"h": config}}})
        view = until_state(client, "running", "h")
        assert view["transport"] == "http" and view["pid"] is None
        result = client.call(
            "mcp.call", {"server": "h", "tool": "echo", "arguments": {"text": "web"}, "key": "k"}
        )
        assert result == {"output": "echo: web", "is_error": False}
        got = client.call("config.get", {"path": "mcp.servers.h.headers"})["value"]
        assert got == {"Authorization": "<redacted>"}
    finally:
        server.terminate()
        server.wait(10)
    assert marks(tmp_path / "marks") == ['echo done "web"']


def test_a_crash_of_the_mcp_actor_mid_call_is_unknown_and_never_resent(
    gateway_with: Start, tmp_path: Path
) -> None:
    """The actor's loop and its servers go with it; the next incarnation starts them again and
    settles the call it cannot know `unknown`: the session says so and the call ran once."""
    config = {
        "approvals": {"default": "auto"},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks")}},
    }
    _, client = gateway_with(config)
    first = until_state(client, "running")
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__change", {"seconds": 30})
    until(lambda: "change start 30.0" in marks(tmp_path / "marks"), "the call running")
    client.call("test.crash", {"actor": "mcp"})
    final_answer(client, session["id"], sent)
    [result] = tool_results(client, session["id"])
    assert result["status"] == "unknown" and "not run again" in result["text"]
    again = until_state(client, "running")
    assert again["pid"] != first["pid"]
    assert client.call("gateway.status", {})["actors"]["mcp"]["restarts"] == 1
    assert [m for m in marks(tmp_path / "marks") if " start " in m] == ["change start 30.0"]


def test_a_server_removed_while_it_starts_is_stopped_and_leaves_nothing_running(
    gateway_with: Start, tmp_path: Path
) -> None:
    """Its start (30 s before it answers) is cut short at once, and the test's leftover check
    (every child process of the test) sees no server after the gateway stops."""
    config = {"mcp": {"servers": {"t": server_config(tmp_path / "marks", "--slow-start", "30")}}}
    gateway, client = gateway_with(config)
    until_state(client, "starting")
    client.call("config.unset", {"path": "mcp.servers.t"})
    assert client.call("mcp.list", {})["servers"] == {}
    gateway.stop(grace_ms=0)


def test_a_call_made_while_its_server_starts_waits_for_it_and_runs_once(
    gateway_with: Start, tmp_path: Path
) -> None:
    """After a gateway start the servers start in the background: a turn that calls one of a
    configured server's tools before it runs is approved with what it names and waits."""
    config = {
        "approvals": {"default": "auto"},
        "mcp": {"servers": {"t": server_config(tmp_path / "marks", "--slow-start", "2")}},
    }
    _, client = gateway_with(config)
    assert server_view(client)["state"] == "starting"
    session = client.call("sessions.create", {"cwd": str(tmp_path)})
    sent = send_tool_call(client, session["id"], "mcp__t__echo", {"text": "early"})
    final_answer(client, session["id"], sent)
    [result] = tool_results(client, session["id"])
    assert result["status"] == "executed" and "echo: early" in result["text"]
    sent = send_tool_call(client, session["id"], "mcp__t__nosuch", {})  # running now: refused
    final_answer(client, session["id"], sent)
    assert "does not offer it" in tool_results(client, session["id"])[-1]["text"]
    assert marks(tmp_path / "marks") == ['echo done "early"']
