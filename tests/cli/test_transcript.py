"""How tool calls and results read in one line, in `tek chat` and `tek sessions show`."""

from __future__ import annotations

import json
from typing import Any

from tek_actors.cli._transcript import (
    call_line,
    remembered_line,
    remembered_prefix,
    result_line,
    transcript,
    what_runs,
)


def test_a_call_reads_as_what_the_model_asked_for() -> None:
    shell = {"name": "shell", "arguments": {"argv": ["sh", "-c", "echo hi; ls"], "cwd": "sub"}}
    assert call_line(shell) == "→ shell: sh -c 'echo hi; ls' (in sub)"
    read = {"name": "read_file", "arguments": {"path": "a.txt", "offset": 10}}
    assert call_line(read) == "→ read_file a.txt from byte 10"
    write = {"name": "write_file", "arguments": {"path": "b.txt", "content": "é\n"}}
    assert call_line(write) == "→ write_file b.txt: 3 bytes"
    odd = {"name": "greet", "arguments": {"name": "Ann"}}
    assert call_line(odd) == '→ greet {"name": "Ann"}'
    malformed = {"name": "shell", "arguments": {"argv": 7}}
    assert call_line(malformed) == '→ shell {"argv": 7}'
    long = {"name": "shell", "arguments": {"argv": ["echo", "x" * 500]}}
    assert len(call_line(long)) == 160 and call_line(long).endswith("…")


def test_an_approval_shows_what_really_runs_and_where() -> None:
    assert what_runs("shell", {"argv": ["ls", "-la"], "cwd": "/w"}) == ["shell: ls -la", "in /w"]
    assert what_runs("write_file", {"path": "/w/a", "content": "abc", "append": True}) == [
        "write_file /w/a: 3 bytes, appended"
    ]
    mcp = {"server": "fs", "tool": "read.text", "arguments": {"path": "/n/\x1b[2Jx"}}
    assert what_runs("mcp__fs__read_text", mcp) == [
        'mcp__fs__read_text: MCP server fs, tool read.text, arguments {"path": "/n/\\u001b[2Jx"}'
    ]


def test_a_result_reads_as_its_status_exit_and_first_line() -> None:
    ran = json.dumps({"exit_code": 2, "output": "no such file\nsecond\nthird"})
    assert result_line("shell", "executed", ran) == (
        "← shell executed, exit 2: no such file (+2 lines)"
    )
    denied = json.dumps({"error": "the call was denied: by a person"})
    assert result_line("shell", "denied", denied) == (
        "← shell denied: the call was denied: by a person"
    )
    wrote = json.dumps({"path": "/w/a", "bytes": 9, "append": False})
    assert result_line("write_file", "executed", wrote) == (
        "← write_file executed: wrote 9 bytes to /w/a"
    )
    read = json.dumps(
        {"path": "/w/a", "size": 50, "offset": 0, "content": "x" * 8, "truncated": True}
    )
    assert result_line("read_file", "executed", read) == (
        "← read_file executed: /w/a (8 of 50 bytes, more after it)"
    )
    assert result_line("x", "executed", "not json") == "← x executed: not json"


def test_the_transcript_puts_each_turn_after_its_message() -> None:
    def entry(role: str, id_: str, turn: str | None = None, **more: Any) -> dict[str, Any]:
        return {"role": role, "id": id_, "turn": turn, "text": "", "tool_calls": [], **more}

    call = {"id": "c1", "name": "shell", "arguments": {"argv": ["true"]}}
    entries = [
        entry("user", "m1", text="run it"),
        entry("assistant", "a1", "m1", model="local", tool_calls=[call]),
        entry("user", "m2", text="and then?"),  # sent while m1's turn ran
        entry("tool", "t1", "m1", name="shell", status="executed", text='{"exit_code": 0}'),
        entry("assistant", "a2", "m1", model="local", text="done"),
        entry("error", "e1", "m2", text="no model answered"),
    ]
    assert transcript(entries) == [
        "user> run it",
        "local> → shell: true",
        "tool> ← shell executed, exit 0",
        "local> done",
        "user> and then?",
        "error> no model answered",
    ]


def test_always_says_exactly_the_rule_the_gateway_remembers() -> None:
    from tek_actors.approvals.policy import remembered
    from tek_actors.config.model import ApprovalsConfig

    for arguments in (
        {"argv": ["echo", "alw"]},
        {"argv": ["rm", "-rf", "a b"], "cwd": "/w"},
        {"argv": []},
        {"argv": ["x", 1]},
        {"path": "/w/a", "content": "x"},
    ):
        path, value = remembered(ApprovalsConfig(), "shell", arguments, "auto")
        prefix = remembered_prefix(arguments)
        if prefix is None:
            assert path == "approvals.tools.shell", arguments
        else:
            assert path == "approvals.rules" and value[-1]["argv_prefix"] == prefix, arguments
    assert remembered_line("shell", {"argv": ["echo", "alw"]}, "approve") == (
        "shell runs `echo alw` and `echo alw …` (these words first, then any) "
        "without asking from now on"
    )
    assert remembered_line("shell", {"argv": ["rm", "-rf", "a b"]}, "deny") == (
        "shell refuses `rm -rf 'a b'` and `rm -rf 'a b' …` (these words first, then any) "
        "from now on"
    )
    assert remembered_line("write_file", {"path": "/w/a"}, "approve") == (
        "every write_file call runs without asking from now on"
    )
    hostile = remembered_line("shell", {"argv": ["echo", "\x1b[2J", "[red]x"]}, "approve")
    assert "\x1b" not in hostile and "echo '\\x1b[2J' '[red]x'" in hostile
