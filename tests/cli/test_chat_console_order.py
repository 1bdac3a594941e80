"""The terminal console puts on the screen, in order, what it was given: a prompt is drawn only
after every line written before it (found in CI: the prompt came out in the middle of the
answer it should follow, under load, when writes went through prompt_toolkit's writer thread
between prompts too)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.slow

LINES = 400

SCRIPT = textwrap.dedent(
    f"""
    import sys
    from tek_actors.cli._chat_terminal import TerminalConsole

    console = TerminalConsole(history=sys.argv[1], colour=False)
    try:
        for round in range(3):
            for n in range({LINES}):
                console.stream(f"r{{round}} part {{n}} ")  # streamed, mid-line
                console.say(f"of line {{n}}")
            console.say(f"r{{round}} the end")
            console.read_line(f"r{{round}}> ")
    finally:
        console.close()
    """
)


def test_every_line_written_before_a_prompt_is_on_the_screen_before_it(tmp_path: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-c", SCRIPT, str(tmp_path / "history")],
        env=dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm-256color"),
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 250),
    )
    try:
        for round in range(3):
            child.expect_exact(f"r{round}>")  # (its space is a cursor move)
            before = child.before
            # Everything of this round, whole and in order, came before its prompt.
            ends = [before.find(f"r{round} part {n} of line {n}\r\n") for n in range(LINES)]
            assert -1 not in ends, f"line {ends.index(-1)} of round {round} was not before it"
            assert ends == sorted(ends)
            assert f"r{round} the end" in before
            child.sendline("")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
