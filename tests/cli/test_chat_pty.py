"""`tek chat` in a pseudo-terminal, as a person types: tool calls, inline approvals, a crash of
the gateway mid-conversation, and the transcript `tek sessions show` prints afterwards."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
from pathlib import Path

import pexpect
import pytest

from tek_actors.cli._chat_turns import PROMPT
from tests.cli.test_chat_terminal import as_shown, expect_text
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow

FIRST = ["sh", "-c", "echo ran >> marker.txt; echo tool output"]
SECOND = ["sh", "-c", "echo again >> marker.txt; echo second output"]


def _chat(home: Path, cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "tek_actors", "--home", str(home), "chat"],
        cwd=str(cwd),
        # No terminal answers prompt_toolkit's cursor position request here; a person's does.
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING", PROMPT_TOOLKIT_NO_CPR="1"),
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 250),  # wide: no line of the test is folded by the terminal
    )


def _answered(chat: pexpect.spawn, text: str) -> None:
    """Wait for the answer `text` (streamed: in chunks), its model label, and the next prompt."""
    expect_text(chat, text)
    chat.expect_exact("[local]")
    chat.expect_exact("you>")


def test_a_person_approves_tool_calls_inline_and_later_across_a_gateway_crash(
    home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    chat = _chat(home, work)
    seen = io.StringIO()
    chat.logfile_read = seen
    try:
        chat.expect(r"new session (s-[0-9a-f]+);")
        session = chat.match.group(1)
        chat.expect_exact("you>")

        # (a) a plain line
        chat.sendline("hello there")
        _answered(chat, "(local model) You said: hello there")

        # (b) a tool call: shown, asked about inline, run once on "y", and answered
        chat.sendline("tool: shell " + json.dumps({"argv": FIRST}))
        chat.expect_exact("→ shell: sh -c 'echo ran >> marker.txt; echo tool output'")
        expect_text(chat, "? shell: sh -c 'echo ran >> marker.txt; echo tool output'")
        chat.expect(rf"in {re.escape(str(work))}  \(approval (a-[0-9a-f]+)\)")
        first_approval = chat.match.group(1)
        chat.expect_exact(PROMPT)
        assert not (work / "marker.txt").exists()  # nothing runs before the person says so
        chat.send("y")  # one key
        chat.expect_exact(f"{first_approval} approved")
        chat.expect_exact("← shell executed, exit 0: tool output")
        _answered(
            chat, '(local model) The tool returned: "{"exit_code": 0, "output": "tool output"}"'
        )
        assert (work / "marker.txt").read_text() == "ran\n"

        # (c) the gateway dies between two lines and is started again
        pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        assert tek(home, "gateway", "start").returncode == 0
        chat.sendline("after the crash")
        _answered(chat, "(local model) You said: after the crash")

        # (d) a tool call left for later, listed, then approved with /approve
        chat.sendline("tool: shell " + json.dumps({"argv": SECOND}))
        chat.expect_exact(PROMPT)
        chat.send("l")
        chat.expect(r"the session waits for your decision on (a-[0-9a-f]+)")
        second_approval = chat.match.group(1)
        chat.expect_exact("you>")
        chat.sendline("/approvals")
        chat.expect_exact(f"{second_approval}  shell: sh -c 'echo again >> marker.txt;")
        chat.expect_exact("you>")
        assert (work / "marker.txt").read_text() == "ran\n"  # still waiting
        chat.sendline("/approve")
        chat.expect_exact(f"{second_approval} approved")
        chat.expect_exact("← shell executed, exit 0: second output")
        _answered(chat, '"output": "second output"}"')
        assert (work / "marker.txt").read_text() == "ran\nagain\n"

        # (e) the transcript: every line once, in order, tool calls and results included
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
        chat.close()
        assert chat.exitstatus == 0
        terminal = seen.getvalue()
        for once in (
            "(local model) You said: hello there",
            "(local model) You said: after the crash",
            "(local model) The tool returned",
            "← shell executed, exit 0: tool output",
            "← shell executed, exit 0: second output",
        ):
            times = len(re.findall(as_shown(once), terminal))
            assert times == (2 if once.endswith("returned") else 1), once
        assert terminal.count("(approval a-") == 2  # each approval asked about once
        shown = tek(home, "sessions", "show", session)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines() == [
            "user> hello there",
            "local> (local model) You said: hello there",
            "user> tool: shell " + json.dumps({"argv": FIRST}),
            "local> → shell: sh -c 'echo ran >> marker.txt; echo tool output'",
            "tool> ← shell executed, exit 0: tool output",
            'local> (local model) The tool returned: "{"exit_code": 0, "output": "tool output"}"',
            "user> after the crash",
            "local> (local model) You said: after the crash",
            "user> tool: shell " + json.dumps({"argv": SECOND}),
            "local> → shell: sh -c 'echo again >> marker.txt; echo second output'",
            "tool> ← shell executed, exit 0: second output",
            'local> (local model) The tool returned: "{"exit_code": 0, "output": "second output"}"',
        ]
    finally:
        chat.close(force=True)
        tek(home, "gateway", "stop")
