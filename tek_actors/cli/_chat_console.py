"""Where `tek chat` reads what a person types and writes what happens: the screen's side of a
conversation, so that the conversation itself (`_chat_turns`, `_chat_commands`) never cares
whether it talks to a terminal or a pipe.

`open_console` picks one of two:

- `PlainConsole` for pipes and files (a script feeding `tek chat`, a test): lines in, lines out,
  no colour, no spinner; an approval is answered with a line (`y`, `no`, `always`...).
- `TerminalConsole` (`_chat_terminal`, prompt_toolkit, imported only then) when stdin and
  stdout are both a terminal: line editing, history, single-key answers, a spinner, and lines
  written from any thread appear above the prompt instead of inside it.

Colour (`Paint`) only on a terminal, never when NO_COLOR is set (https://no-color.org) or TERM
is `dumb`. Everything painted here is already visible text (`_render.visible`): a colour wraps
data, it never interprets it.

Every method may be called from the chat's main thread; `notice` also from any other thread.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from tek_actors.home import TekHome

__all__ = ["KEYS", "PROMPT", "Paint", "PlainConsole", "open_console", "wants_colour"]

# The approval question's answers (docs/chat.md): one key on a terminal, a word on a pipe.
KEYS = {"y": "yes", "n": "no", "a": "always", "l": "later"}
PROMPT = "allow? [y]es / [n]o / [a]lways / [l]ater / Enter: details"
DETAILS = "?"  # what `ask_key` returns for Enter: show the details, then ask again
WITHDRAWN = "withdrawn"  # what `ask_key` returns when the question no longer matters

Poll = Callable[[], bool]


def wants_colour(stream: TextIO) -> bool:
    """Colour for `stream`: a terminal, NO_COLOR unset (any non-empty value turns it off), and
    a terminal that is not `dumb`."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Paint:
    """The chat's few colours, by meaning; identity when colour is off."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def _style(self, text: str, **style: object) -> str:
        return click.style(text, **style) if self.colour and text else text  # type: ignore[arg-type]

    def you(self, text: str) -> str:
        return self._style(text, fg="green", bold=True)

    def call(self, text: str) -> str:
        return self._style(text, fg="cyan")

    def result(self, text: str) -> str:
        return self._style(text, fg="blue")

    def ask(self, text: str) -> str:
        return self._style(text, fg="yellow", bold=True)

    def quiet(self, text: str) -> str:
        return self._style(text, dim=True)

    def warn(self, text: str) -> str:
        return self._style(text, fg="yellow")

    def error(self, text: str) -> str:
        return self._style(text, fg="red")


class PlainConsole:
    """Lines through stdin and stdout (stderr for what is about the chat, not the conversation);
    also the interface TerminalConsole keeps, with a terminal's manners.
    `poll` arguments are not called: a blocking read of a pipe has no moment to call them, so
    what arrived meanwhile is shown after the next line (the caller drains it)."""

    interactive = False

    def __init__(self, *, colour: bool = False) -> None:
        self.paint = Paint(colour)
        self._lock = threading.Lock()  # `notice` comes from the gateway watch's thread

    def read_line(
        self, prompt: str, *, poll: Poll | None = None, attend: Callable[[], None] | None = None
    ) -> str | None:
        """The next line typed after `prompt`, without its newline; None at the end of input.
        On a terminal, `poll()` is called a few times a second while the person types; when it
        returns True the prompt is put away, `attend()` runs, and the prompt comes back with
        what was typed so far."""
        with self._lock:
            sys.stdout.write(self.paint.you(prompt))
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            with self._lock:
                sys.stdout.write("\n")
            return None
        return line.rstrip("\r\n")

    def ask_key(self, question: str, *, withdrawn: Poll | None = None) -> str:
        """One of KEYS' keys, DETAILS (Enter), or WITHDRAWN once `withdrawn()` says the answer
        no longer matters (only a terminal notices that while waiting). The end of input, or
        Ctrl-C on a terminal, is `l` (later): no decision."""
        while True:
            line = self.read_line(question + " ")
            if line is None:
                return "l"
            word = line.strip().lower()
            if not word:
                return DETAILS
            if word[0] in KEYS and KEYS[word[0]].startswith(word):
                return word[0]
            self.say(
                "answer y (yes), n (no), a (always) or l (later); Enter shows the details", err=True
            )

    def stream(self, text: str) -> None:
        """A model's text as it streams (visible already): no newline added."""
        with self._lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def say(self, line: str, *, err: bool = False) -> None:
        """One whole line (visible already, maybe painted) on stdout, or stderr with `err`."""
        with self._lock:
            stream = sys.stderr if err else sys.stdout
            stream.write(line + "\n")
            stream.flush()

    def notice(self, line: str) -> None:
        """A line about the chat itself (the gateway went away...), from any thread, on stderr;
        on a terminal it goes above the line being typed."""
        self.say(self.paint.warn(line), err=True)

    def thinking(self) -> None:
        """A turn waits for the model: a sign of life until the next output (terminal only)."""

    def close(self) -> None:
        """Give the terminal back (nothing to do for pipes)."""


def open_console(home: TekHome) -> PlainConsole:
    """A TerminalConsole when stdin and stdout are both a terminal, else a PlainConsole (colour
    on stdout's terminal, if any). The caller closes it."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from tek_actors.cli._chat_terminal import TerminalConsole

        return TerminalConsole(history=history_file(home), colour=wants_colour(sys.stdout))
    return PlainConsole(colour=wants_colour(sys.stdout))


def history_file(home: TekHome) -> str:
    """`<state>/chat-history`, the lines typed in every chat, private to the owner (0600, also
    if it existed with a wider mode): they may hold anything a person typed."""
    home.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home.state_dir / "chat-history"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    return str(path)
