"""`tek chat` on a terminal as a person expects it (issue 15, items 6 and 9), driven through a
pseudo-terminal against a real gateway: line editing and history, single-key approval answers,
a prompt that notices a decision made elsewhere, the "always" wording, /help, colour, the
"thinking…" sign of life, and a gateway's death said above the `you>` line, not into it."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tek_actors.cli._chat_commands import SLASH
from tek_actors.testing import write_config
from tek_actors.testing.fake_providers import FakeProvider
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow

LEFT, UP = "\x1b[D", "\x1b[A"
FOREGROUND_COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7]m")
ESCAPE = r"\x1b\[[0-9;?]*[A-Za-z]"  # a colour, a cursor move: what a terminal does not show


def spawn_chat(home: Path, cwd: Path, *args: str, **env: str) -> pexpect.spawn:
    chat = pexpect.spawn(
        sys.executable,
        ["-m", "tek_actors", "--home", str(home), "chat", *args],
        cwd=str(cwd),
        # No terminal answers prompt_toolkit's cursor position request here; a person's does.
        env={
            **{k: v for k, v in os.environ.items() if k != "NO_COLOR"},
            "TEK_LOG_LEVEL": "WARNING",
            "TERM": "xterm-256color",
            "PROMPT_TOOLKIT_NO_CPR": "1",
            **env,
        },
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 250),
    )
    chat.logfile_read = io.StringIO()
    return chat


def as_shown(text: str) -> str:
    """A pattern for `text` as a terminal is sent it: control sequences may come between its
    characters (prompt_toolkit turns autowrap on before each write of a streamed chunk)."""
    return f"(?:{ESCAPE})*".join(re.escape(char) for char in text)


def expect_text(chat: pexpect.spawn, text: str) -> None:
    chat.expect(as_shown(text))


def seen(chat: pexpect.spawn) -> str:
    log = chat.logfile_read
    assert isinstance(log, io.StringIO)
    return log.getvalue()


def quit_chat(chat: pexpect.spawn) -> None:
    chat.expect_exact("you>")
    chat.sendline("/quit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0, seen(chat)


@pytest.fixture
def work(home: Path, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "work"
    folder.mkdir()
    try:
        yield folder
    finally:
        tek(home, "gateway", "stop")


def test_lines_are_edited_and_kept_in_a_private_history_across_chats(
    home: Path, work: Path
) -> None:
    chat = spawn_chat(home, work)
    try:
        chat.expect_exact("you>")
        chat.send("abc" + LEFT + LEFT + "X\r")  # the cursor moves: X goes between a and b
        expect_text(chat, "You said: aXbc")
        chat.expect_exact("you>")
        chat.send(UP + "\r")  # the line before, again
        expect_text(chat, "You said: aXbc")
        quit_chat(chat)
        history = home / "state" / "chat-history"
        assert stat.S_IMODE(history.stat().st_mode) == 0o600
        again = spawn_chat(home, work)
        again.expect_exact("you>")
        again.send(UP + UP + "\r")  # /quit, then the line of the other chat
        expect_text(again, "You said: aXbc")
        assert "^[[A" not in seen(again)
        quit_chat(again)
    finally:
        chat.close(force=True)


def test_help_lists_every_slash_command_and_an_unknown_one_points_at_it(
    home: Path, work: Path
) -> None:
    chat = spawn_chat(home, work)
    try:
        chat.expect_exact("you>")
        chat.sendline("/help")
        for command in (
            "/help",
            "/approvals",
            "/approve",
            "/deny",
            "/model",
            "/plan",
            "/undo",
            "/sessions",
            "/title",
            "/quit",
        ):
            # each with words saying what it does (a line printed while the next prompt is
            # drawn comes after that prompt's erasure, not after a newline)
            (usage,) = [usage for usage in SLASH if usage.split()[0] == command]
            chat.expect(rf"{re.escape(usage)}(?:\s|{ESCAPE})+{re.escape(SLASH[usage])}")
        chat.expect_exact("you>")
        chat.sendline("/nope [red]x")
        chat.expect_exact("unknown command /nope; /help lists the commands")
        quit_chat(chat)
    finally:
        chat.close(force=True)


def _tool(argv: list[str]) -> str:
    return "tool: shell " + json.dumps({"argv": argv})


def test_a_single_key_answers_and_always_says_which_commands_run_without_asking(
    home: Path, work: Path
) -> None:
    chat = spawn_chat(home, work)
    try:
        chat.expect_exact("you>")
        chat.sendline(_tool(["echo", "alw"]))
        chat.expect_exact("allow?")
        chat.send("\r")  # Enter: the details, and the question again
        chat.expect_exact('"argv": ["echo", "alw"]')
        chat.expect_exact("allow?")
        chat.send("a")  # one key, no Enter
        chat.expect_exact(
            "shell runs `echo alw` and `echo alw …` (these words first, then any) "
            "without asking from now on"
        )
        chat.expect_exact("← shell executed, exit 0: alw")
        chat.expect_exact("you>")
        chat.sendline(_tool(["echo", "alw", "more"]))  # the remembered prefix: no question
        chat.expect_exact("← shell executed, exit 0: alw more")
        chat.expect_exact("you>")
        chat.sendline(_tool(["echo", "alw2"]))  # another word: asked again
        chat.expect_exact("allow?")
        chat.send("n")
        chat.expect_exact("← shell denied")
        quit_chat(chat)
        assert seen(chat).count("(approval a-") == 2  # one question each: the prefix ran unasked
    finally:
        chat.close(force=True)


def test_an_open_approval_prompt_is_withdrawn_when_decided_elsewhere(
    home: Path, work: Path
) -> None:
    chat = spawn_chat(home, work)
    try:
        chat.expect_exact("you>")
        chat.sendline(_tool(["echo", "elsewhere"]))
        chat.expect(r"\(approval (a-[0-9a-f]+)\)")
        approval = chat.match.group(1)
        chat.expect_exact("allow?")
        decided = tek(home, "approvals", "approve", approval)
        assert decided.returncode == 0, decided.stderr
        chat.expect_exact(f"{approval} was approved elsewhere (approved by a person)")
        chat.expect_exact("← shell executed, exit 0: elsewhere")  # no key was needed
        quit_chat(chat)
    finally:
        chat.close(force=True)


def test_colour_on_a_terminal_and_none_with_no_color(home: Path, work: Path) -> None:
    for env, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        chat = spawn_chat(home, work, **env)
        try:
            chat.expect_exact("you>")
            chat.sendline("hello")
            chat.expect_exact("[local]")
            quit_chat(chat)
            assert bool(FOREGROUND_COLOUR.search(seen(chat))) is coloured, env
        finally:
            chat.close(force=True)


def test_a_slow_model_shows_a_sign_of_life_until_its_first_token(home: Path, work: Path) -> None:
    with FakeProvider("openai") as server:
        write_config(
            home,
            {
                "providers": {
                    "lab": {"kind": "openai", "base_url": server.base_url, "api_key": "k"}
                },
                "models": {"main": {"provider": "lab", "model": "m"}},
                "default_model": "main",
            },
        )
        server.script({"text": "the answer"})
        server.hold()  # the model "thinks" until released
        chat = spawn_chat(home, work)
        try:
            chat.expect_exact("you>")
            chat.sendline("think hard")
            chat.expect_exact("thinking…")
            server.wait_for_held(1)
            server.release_all()
            expect_text(chat, "the answer")
            chat.expect_exact("[main]")
            quit_chat(chat)
            shown = seen(chat)
            # erased before the answer: the line that shows it starts clean
            answer = re.search(as_shown("the answer"), shown)
            assert answer is not None
            before = shown[shown.rindex("thinking…", 0, answer.start()) : answer.start()]
            assert "\x1b[K" in before or "\x1b[2K" in before, repr(before)
        finally:
            chat.close(force=True)


def test_a_dead_gateway_is_said_above_the_line_being_typed(home: Path, work: Path) -> None:
    chat = spawn_chat(home, work)
    try:
        chat.expect_exact("you>")
        chat.sendline("first")
        expect_text(chat, "You said: first")
        chat.expect_exact("you>")
        chat.send("half typed")
        expect_text(chat, "half typed")
        pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        chat.expect_exact("gateway down, reconnecting…")
        chat.expect_exact("you>")  # redrawn below the notice, with what was typed
        expect_text(chat, "half typed")
        assert tek(home, "gateway", "start").returncode == 0
        chat.expect_exact("gateway back")
        chat.expect_exact("you>")
        chat.send(" line\r")
        expect_text(chat, "You said: half typed line")
        quit_chat(chat)
    finally:
        chat.close(force=True)
