"""Hostile text through every `tek` view, against one real gateway process: what came from a
user, a model or a tool is shown as data (never rich markup, never terminal control), and an
argv as `shlex.join` shows it, so that what a person reads is what would run.

Issue 15, 1: `echo '[/x] [red]hi'` made `tek procs list` raise MarkupError; `echo '[bold]--hidden'
'[a-z]x'` was shown as `echo --hidden x`, `echo '[a-z]*'` as `echo *`, `["rm","-rf","a b"]` as
`rm -rf a b`. Each view below is fed those and the control characters (ANSI escapes, `\\r`, bidi
overrides), piped (plain columns) and, for the tables, on a terminal (rich's box drawing).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tek_actors import Client
from tek_actors.cli._render import visible
from tek_actors.testing import GatewayProcess
from tests.cli.test_cli import tek
from tests.waiting import until

pytestmark = pytest.mark.slow

# Shown exactly so: shlex.split gives the argv back.
MARKUP = [
    ["echo", "[/x] [red]hi"],
    ["echo", "[bold]--hidden", "[a-z]x"],
    ["echo", "[a-z]*"],
    ["rm", "-rf", "a b"],
]
# Each control character shown as its escape, never sent to the terminal.
CONTROL: dict[tuple[str, ...], str] = {
    ("echo", "\x1b[2Jred\x1b]0;t\x07", "a\rb"): "echo '\\x1b[2Jred\\x1b]0;t\\x07' 'a\\x0db'",
    ("echo", "exe.\u202etxt", "\u2066x\u2069"): "echo 'exe.\\u202etxt' '\\u2066x\\u2069'",
    ("echo", "line\nnext", "tab\there"): "echo 'line\\x0anext' 'tab\\x09here'",
}
RAW_CONTROLS = ["\x1b", "\x07", "\r", "\u202e", "\u2066", "\u2069"]


def _shown_argvs() -> list[tuple[list[str], str]]:
    """(argv, how every view must show it), the markup ones with shlex.split as the judge."""
    cases = [(argv, shlex.join(argv)) for argv in MARKUP]
    for argv, shown in zip(MARKUP, (shown for _, shown in cases), strict=True):
        assert shlex.split(shown) == argv
    return cases + [(list(argv), shown) for argv, shown in CONTROL.items()]


CASES = _shown_argvs()


def _assert_clean(text: str) -> None:
    """No raw control character (the terminal would act on it) and no markup error. On a
    terminal rich styles its tables with SGR sequences (`\x1b[1m`): those are its own, and the
    hostile escapes here are none of them (clear screen, a window title)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text.replace("\r\n", "\n"))
    for raw in RAW_CONTROLS:
        assert raw not in text, f"{raw!r} reached the screen raw"
    assert "MarkupError" not in text and "Traceback" not in text


def _column(stdout: str, name: str, next_name: str | None = None) -> list[str]:
    """A plain table's column `name`, read by its header's offsets (piped output)."""
    header, *rows = stdout.splitlines()
    start = header.index(name)
    end = header.index(next_name) if next_name else None
    return [row[start:end].rstrip() for row in rows]


def _on_terminal(home: Path, *args: str) -> str:
    """`tek ARGS` in a wide pseudo-terminal: what a person's terminal receives."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tek_actors", "--home", str(home), *args],
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
        encoding="utf-8",
        timeout=60,
        dimensions=(200, 400),  # wide: no cell of the test is folded
    )
    try:
        child.expect(pexpect.EOF)
        return str(child.before)
    finally:
        child.close(force=True)


@pytest.fixture
def gateway(home: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(home) as process:
        yield process


def test_visible_escapes_controls_and_keeps_text() -> None:
    assert visible("[/x] [red]hi") == "[/x] [red]hi"
    assert visible("a\x1b[2Jb\rc\x9bd\x00") == "a\\x1b[2Jb\\x0dc\\x9bd\\x00"
    assert visible("\u202aa\u202eb\u2066c\u2069") == "\\u202aa\\u202eb\\u2066c\\u2069"
    assert visible("one\ntwo\tthree") == "one\\x0atwo\\x09three"
    assert visible("one\ntwo\tthree\r", lines=True) == "one\ntwo\tthree\\x0d"
    assert visible("ünïcode ✓ 漢字") == "ünïcode ✓ 漢字"


def test_procs_list_shows_each_command_as_it_ran(
    gateway: GatewayProcess, home: Path, tmp_path: Path
) -> None:
    ran: dict[str, list[str]] = {}
    for argv, _ in CASES:
        run_argv = argv if argv[0] == "echo" else ["echo", *argv]  # nothing is removed here
        started = tek(home, "--json", "procs", "run", "--cwd", str(tmp_path), "--", *run_argv)
        assert started.returncode == 0, started.stderr
        ran[json.loads(started.stdout)["id"]] = run_argv
    listed = tek(home, "procs", "list")
    assert listed.returncode == 0, listed.stderr
    _assert_clean(listed.stdout)
    assert "━" not in listed.stdout and "│" not in listed.stdout  # piped: plain columns
    commands = dict(
        zip(_column(listed.stdout, "id", "pid"), _column(listed.stdout, "command"), strict=True)
    )
    for proc_id, argv in ran.items():
        if tuple(argv) in CONTROL:
            assert commands[proc_id] == CONTROL[tuple(argv)]
        else:
            assert shlex.split(commands[proc_id]) == argv
    terminal = _on_terminal(home, "procs", "list")
    _assert_clean(terminal)
    assert "┃" in terminal  # a terminal gets rich's table
    for proc_id in ran:
        assert commands[proc_id] in terminal


def _request(home: Path, call: str, argv: list[str]) -> dict[str, Any]:
    with Client(home=str(home), timeout=10) as client:
        payload = {"session": "s1", "tool_call": call, "tool": "shell", "arguments": {"argv": argv}}
        result: dict[str, Any] = client.call("approvals.request", payload)
        return result


def test_approvals_list_and_watch_show_what_would_run(gateway: GatewayProcess, home: Path) -> None:
    shown_by_id = {
        _request(home, f"render-{n}", argv)["id"]: shown for n, (argv, shown) in enumerate(CASES)
    }
    argv_by_id = dict(zip(shown_by_id, (argv for argv, _ in CASES), strict=True))
    listed = tek(home, "approvals", "list", "--status", "pending")
    assert listed.returncode == 0, listed.stderr
    _assert_clean(listed.stdout)
    body = listed.stdout.split("\npolicy version")[0]
    calls = dict(
        zip(_column(body, "id", "status"), _column(body, "call", "requested"), strict=True)
    )
    for approval_id, shown in shown_by_id.items():
        assert calls[approval_id] == f"shell: {shown}"
        if tuple(argv_by_id[approval_id]) not in CONTROL:
            assert (
                shlex.split(calls[approval_id].removeprefix("shell: ")) == argv_by_id[approval_id]
            )
    terminal = _on_terminal(home, "approvals", "list", "--status", "pending")
    _assert_clean(terminal)
    for shown in shown_by_id.values():
        assert f"shell: {shown}" in terminal

    watcher = subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "approvals", "watch", "--once"],
        input="skip\n" * len(shown_by_id),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )
    assert watcher.returncode == 0, watcher.stderr
    _assert_clean(watcher.stdout)
    asked = {
        line.split(" from session ")[0]: line.split(": ", 1)[1]
        for line in watcher.stdout.splitlines()
        if " from session " in line
    }
    for approval_id, shown in shown_by_id.items():
        assert asked[approval_id] == f"shell: {shown}"
        if tuple(argv_by_id[approval_id]) not in CONTROL:
            assert (
                shlex.split(asked[approval_id].removeprefix("shell: ")) == argv_by_id[approval_id]
            )


def _session_with_calls(home: Path, cwd: Path) -> str:
    """A session whose user asked the local model for each hostile shell call in turn, each
    denied (nothing runs)."""
    with Client(home=str(home), timeout=20) as client:
        session = str(client.call("sessions.create", {"cwd": str(cwd)})["id"])
        query = {"status": "pending", "session": session}
        for argv, _ in CASES:
            text = "tool: shell " + json.dumps({"argv": argv})
            client.call("sessions.send", {"id": session, "text": text})
            waiting = until(lambda: client.call("approvals.list", query)["items"], "asked")
            payload = {"id": waiting[0]["id"], "decision": "deny", "remember": False}
            client.call("approvals.decide", payload)
            until(lambda: not client.call("sessions.get", {"id": session})["queue"], "turn end")
    return session


def test_sessions_show_quotes_every_call_and_message(
    gateway: GatewayProcess, home: Path, tmp_path: Path
) -> None:
    session = _session_with_calls(home, tmp_path)
    shown = tek(home, "sessions", "show", session)
    assert shown.returncode == 0, shown.stderr
    _assert_clean(shown.stdout)
    calls = [
        line.split("> → shell: ", 1)[1] for line in shown.stdout.splitlines() if "→ shell: " in line
    ]
    assert calls == [expected for _, expected in CASES]
    for argv, line in zip(MARKUP, calls, strict=False):
        assert shlex.split(line) == argv
    missing = tek(home, "sessions", "show", "[/foo]")
    assert missing.returncode == 1
    assert "there is no session '[/foo]'" in missing.stderr and "Traceback" not in missing.stderr


def test_chat_shows_calls_and_asks_about_what_would_run(
    gateway: GatewayProcess, home: Path, tmp_path: Path
) -> None:
    lines = []
    for argv, _ in CASES:
        lines += ["tool: shell " + json.dumps({"argv": argv}), "n"]  # n: deny, nothing runs
    chat = subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "chat"],
        input="\n".join([*lines, "[/x] [red]hi \x1b[2J", "/quit", ""]),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )
    assert chat.returncode == 0, chat.stdout + chat.stderr
    _assert_clean(chat.stdout + chat.stderr)
    out = chat.stdout.splitlines()
    called = [line.split("→ shell: ", 1)[1] for line in out if "→ shell: " in line]
    asked = [line.split("? shell: ", 1)[1] for line in out if "? shell: " in line]
    assert called == [shown for _, shown in CASES]
    assert asked == [shown for _, shown in CASES]
    assert any("You said: [/x] [red]hi \\x1b[2J" in line for line in out)


def test_events_print_json_lines_and_escaped_text(
    gateway: GatewayProcess, home: Path, tmp_path: Path
) -> None:
    argv = ["echo", "[/x] [red]hi", "\x1b[2J\u202e"]
    started = tek(home, "--json", "procs", "run", "--cwd", str(tmp_path), "--", *argv)
    assert started.returncode == 0, started.stderr
    for args in (["events", "--since", "0"], ["events", "--since", "0", "--json"]):
        piped = tek(home, *args)
        assert piped.returncode == 0, piped.stderr
        events = [json.loads(line) for line in piped.stdout.splitlines()]  # one event a line
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        intents = [e for e in events if e["event"] == "effect.intended"]
        assert argv in [e["data"].get("spec", {}).get("argv") for e in intents]
    terminal = _on_terminal(home, "events", "--since", "0")
    _assert_clean(terminal)
    assert '"[/x] [red]hi", "\\u001b[2J\\u202e"' in terminal  # the data as JSON, escapes shown


def test_config_and_providers_show_values_as_data(gateway: GatewayProcess, home: Path) -> None:
    hostile = "[/x] [red]hi\x1b[2J"
    changed = tek(home, "config", "set", "models.local.model", hostile)
    assert changed.returncode == 0, changed.stderr
    got = tek(home, "config", "get", "models.local.model")
    assert got.stdout == "[/x] [red]hi\\x1b[2J\n"
    listed = tek(home, "providers", "list")
    _assert_clean(listed.stdout)
    assert listed.returncode == 0 and "[/x] [red]hi\\x1b[2J" in listed.stdout
    terminal = _on_terminal(home, "providers", "list")
    _assert_clean(terminal)
    assert "[/x] [red]hi\\x1b[2J" in terminal
    refused = tek(home, "config", "set", "[/x]\x1b[2J", "1")
    assert refused.returncode == 1
    _assert_clean(refused.stderr)
    assert "[/x]\\x1b[2J: is not a configuration field" in refused.stderr
    assert tek(home, "config", "set", "models.local.model", "local").returncode == 0
