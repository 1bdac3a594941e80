"""`tek chat` on a terminal: prompt_toolkit for the `you>` line and the approval question.

- **Line editing and history**: a `PromptSession` over `<state>/chat-history` (0600): the
  arrow keys, Home/End, Ctrl-R search; Up and Down go through the lines of earlier chats too.
- **Nothing cuts into the line being typed.** While a prompt is shown, `patch_stdout` routes
  every write to stdout and stderr, from any thread, through prompt_toolkit: a line goes above
  the prompt and the prompt is redrawn below with what was typed. A partial line (a model's
  text mid-stream) is held until its newline while a prompt is shown.
- **What was written comes before the prompt.** Between prompts every write goes straight to
  the terminal, under the console's lock, so a prompt is drawn only after everything written
  before it; a prompt's end waits until what was written during it is out (closing the
  patch joins its writer thread). A console patched for its whole life hands even those writes
  to that thread, and a prompt drawn before the thread caught up came out in the middle of the
  answer it should follow.
- **A prompt that does not wait in vain.** While a prompt is shown, a background task of its
  event loop calls the caller's `poll` a few times a second, on the main thread (the
  conversation is single-threaded). `poll` shows what arrived; if it says the person is needed
  elsewhere (a new approval at `you>`) or the question is void (decided elsewhere), the prompt
  is put away at once.
- **Single keys** for the approval question: y, n, a, l, Enter (details), Ctrl-C (later); any
  other key does nothing. The question is erased when answered; the caller prints the outcome.
- **A spinner** ("⠋ thinking…") from `thinking()` until the next output, drawn by a thread and
  erased (`\\r` + erase-line) before anything else is written.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application, get_app
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.patch_stdout import patch_stdout

from tek_actors.cli._chat_console import DETAILS, KEYS, WITHDRAWN, PlainConsole, Poll

__all__ = ["TerminalConsole"]

POLL_S = 0.05  # how soon a prompt shows what arrived (and is put away when it must be)
FRAME_S = 0.1
FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ERASE_LINE = "\r\x1b[K"


@dataclass
class _PutAway:
    """A prompt ended by its poll, not by the person: what they had typed, or what failed."""

    text: str = ""
    error: BaseException | None = None


class TerminalConsole(PlainConsole):
    interactive = True

    def __init__(self, *, history: str, colour: bool) -> None:
        super().__init__(colour=colour)
        self._session: PromptSession[str] = PromptSession(history=FileHistory(history))
        self._patch: AbstractContextManager[Any] | None = None  # patch_stdout, while prompting
        self._thinking = False
        self._drawn = False  # the spinner is on the screen
        self._mid_line = False  # a model's text stopped mid-line
        self._stop = threading.Event()
        self._spinner = threading.Thread(target=self._spin, name="tek-chat-spinner", daemon=True)
        self._spinner.start()

    # -- reading -------------------------------------------------------------------------------

    def read_line(
        self, prompt: str, *, poll: Poll | None = None, attend: Callable[[], None] | None = None
    ) -> str | None:
        typed = ""
        while True:
            self._begin_prompt()
            try:
                answer: Any = self._session.prompt(
                    ANSI(self.paint.you(prompt)),
                    default=typed,
                    pre_run=lambda: self._watch(poll),
                )
            except KeyboardInterrupt:  # Ctrl-C drops the line, as in a shell
                answer = ""
            except EOFError:  # Ctrl-D
                return None
            finally:
                self._end_prompt()
            if not isinstance(answer, _PutAway):
                return str(answer)
            if answer.error is not None:
                raise answer.error
            typed = answer.text
            if attend is not None:
                attend()

    def ask_key(self, question: str, *, withdrawn: Poll | None = None) -> str:
        keys = KeyBindings()

        def bind(key: str, result: str) -> None:
            @keys.add(key)
            def _(event: KeyPressEvent) -> None:
                event.app.exit(result=result)

        for key in KEYS:
            bind(key, key)
            bind(key.upper(), key)
        bind("enter", DETAILS)
        bind("c-c", "l")
        bind("c-d", "l")

        @keys.add("<any>")
        def _ignore(event: KeyPressEvent) -> None:
            """Any other key: the question stays."""

        app: Application[Any] = Application(
            layout=Layout(Window(FormattedTextControl(ANSI(question + " ")), height=1)),
            key_bindings=keys,
            full_screen=False,
            erase_when_done=True,
        )
        self._begin_prompt()
        try:
            answer = app.run(pre_run=lambda: self._watch(withdrawn))
        finally:
            self._end_prompt()
        if isinstance(answer, _PutAway):
            if answer.error is not None:
                raise answer.error
            return WITHDRAWN
        return str(answer)

    def _watch(self, poll: Poll | None) -> None:
        """In a prompt's pre_run: call `poll` every POLL_S on its loop; put the prompt away
        when it says so (or raises: the error is raised by the prompt's caller)."""
        if poll is None:
            return
        app = get_app()

        async def polling() -> None:
            while True:
                await asyncio.sleep(POLL_S)
                try:
                    done = poll()
                except BaseException as exc:  # re-raised by the prompt's caller, on the main thread
                    done, app_result = True, _PutAway(error=exc)
                else:
                    app_result = _PutAway(app.current_buffer.text)
                if done:
                    if app.is_running and not app.is_done:
                        app.exit(result=app_result)
                    return

        app.create_background_task(polling())

    # -- writing -------------------------------------------------------------------------------

    def stream(self, text: str) -> None:
        with self._lock:
            self._unspin(stop=True)
            out = _stdout()
            out.write(text)
            if text:
                self._mid_line = not text.endswith("\n")
            if self._patch is None:  # while a prompt is up, a partial line waits for its end
                out.flush()

    def say(self, line: str, *, err: bool = False) -> None:
        with self._lock:
            self._unspin(stop=not err)
            out = _stdout()  # stderr too: one terminal, one order
            out.write(line + "\n")
            self._mid_line = False
            out.flush()

    def notice(self, line: str) -> None:
        with self._lock:
            self._unspin(stop=False)  # a notice does not end the wait: the spinner comes back
            out = _stdout()
            out.write(("\n" if self._mid_line else "") + self.paint.warn(line) + "\n")
            self._mid_line = False
            out.flush()

    def thinking(self) -> None:
        with self._lock:
            self._thinking = True

    def close(self) -> None:
        self._stop.set()
        self._spinner.join()
        with self._lock:
            self._unspin(stop=True)
            sys.stdout.flush()

    # -- the spinner and the prompt's state (under the lock) ------------------------------------

    def _begin_prompt(self) -> None:
        with self._lock:
            self._unspin(stop=True)
            sys.stdout.flush()
            self._patch = patch_stdout(raw=True)  # raw: our colours pass, data is visible already
            self._patch.__enter__()

    def _end_prompt(self) -> None:
        with self._lock:
            _stdout().flush()  # a partial line held while the prompt was up
            patch, self._patch = self._patch, None
            if patch is not None:
                patch.__exit__(None, None, None)  # its writer thread wrote everything, and ended

    def _unspin(self, *, stop: bool) -> None:
        if self._drawn:
            out = _stdout()
            out.write(ERASE_LINE)
            out.flush()
            self._drawn = False
        if stop:
            self._thinking = False

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(FRAME_S):
            with self._lock:
                if not self._thinking or self._patch is not None:
                    continue
                out = _stdout()
                out.write(ERASE_LINE + self.paint.quiet(f"{FRAMES[frame % len(FRAMES)]} thinking…"))
                out.flush()
                self._drawn = True
            frame += 1


def _stdout() -> Any:
    """sys.stdout, read at each write: a StdoutProxy while a prompt is shown, else the
    terminal."""
    return sys.stdout
