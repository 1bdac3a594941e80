"""The `you>` loop of `tek chat`: each line typed is sent to the session (and the turn it starts
followed, `_chat_turns`), unless it is a slash command (SLASH: one line of help each, `/help`
lists them; docs/chat.md).

An untitled session is titled once, from the first line sent to it (`title_from`): cut to
TITLE_MAX characters, stored as typed and shown through `visible`.

Runs on the chat's main thread; talks through the console (`_chat_console`) only.
"""

from __future__ import annotations

from collections.abc import Callable

from tek_actors.cli._chat_console import PlainConsole
from tek_actors.cli._chat_turns import TurnFollower
from tek_actors.cli._render import visible
from tek_actors.cli._transcript import what_runs
from tek_actors.client import Client
from tek_actors.errors import TekError

__all__ = ["SLASH", "TITLE_MAX", "Conversation", "title_from"]

TITLE_MAX = 60

# Every slash command and what it does, in the order /help lists them.
SLASH = {
    "/help": "this list",
    "/approvals": "this session's tool calls waiting for your decision",
    "/approve [ID...]": "approve them (no ID: every one), then follow the turn",
    "/deny [ID...]": "deny them (no ID: every one), then follow the turn",
    "/model ALIAS [carry_over|fresh]": "switch the session's model (the plan first; asks a mode)",
    "/plan ALIAS": "what switching to ALIAS would mean, without switching",
    "/undo": "undo the last model switch",
    "/sessions": "every session; * marks this one",
    "/title TEXT": "rename this session",
    "/quit": "leave (also /exit, Ctrl-D); `tek chat --session ID` comes back",
}
HINT = "/help lists the commands"


def title_from(text: str) -> str:
    """A session's title from the first line a person sent: its first line, spaces collapsed,
    cut to TITLE_MAX characters (at a word when one ends near the cut)."""
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    if len(first) <= TITLE_MAX:
        return first
    cut = first[: TITLE_MAX - 1]
    if " " in cut[TITLE_MAX // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


class Conversation:
    """One chat with one session until /quit or the end of input."""

    def __init__(self, client: Client, follower: TurnFollower, *, titled: bool) -> None:
        self.client = client
        self.follower = follower
        self.console: PlainConsole = follower.console
        self.session_id = follower.session_id
        self.titled = titled
        self._commands: dict[str, Callable[[list[str]], None]] = {
            "/help": self._help,
            "/approvals": self._approvals,
            "/approve": lambda words: self._deciding("approve", words),
            "/deny": lambda words: self._deciding("deny", words),
            "/model": self._switching,
            "/plan": self._switching,
            "/undo": self._switching,
            "/sessions": self._sessions,
            "/title": self._title,
        }

    def run(self) -> None:
        follower = self.follower
        while True:
            text = self.console.read_line("you> ", poll=follower.poll, attend=self._attend)
            if text is None:
                return
            text = text.strip()
            if text in ("/quit", "/exit"):
                return
            follower.drain()  # what happened while the person was typing (a pipe's case)
            follower.ask_waiting()
            if not text:
                continue
            words = text.split()
            if text.startswith("/"):
                command = self._commands.get(words[0])
                if command is None:
                    self.console.say(f"unknown command {visible(words[0])}; {HINT}", err=True)
                else:
                    command(words)
                continue
            sent = self.client.call("sessions.send", {"id": self.session_id, "text": text})
            follower.open.append(sent["message_id"])
            if not self.titled:
                self._name(title_from(text))
            self.follow()

    def follow(self) -> None:
        """Follow the open turns, unless they wait for a call the person left for later; Ctrl-C
        goes back to the prompt (the turn goes on in the gateway)."""
        if self._say_waiting():
            return
        try:
            self.follower.follow()
        except KeyboardInterrupt:
            self.console.say("\n(the turn goes on; what it does is shown as it comes)", err=True)
        self._say_waiting()

    def _attend(self) -> None:
        """The `you>` prompt was put away for an approval: ask it, then follow the turn."""
        self.follower.ask_waiting()
        self.follower.adopt_open_turns()
        self.follow()

    def _say_waiting(self) -> bool:
        waiting = self.follower.waiting_for_person()
        if waiting and self.follower.open:
            self.console.say(
                f"(the session waits for your decision on {visible(', '.join(waiting))}: "
                "/approve or /deny, /approvals)",
                err=True,
            )
        return bool(waiting)

    def _name(self, title: str) -> None:
        self.titled = True  # once: a failed rename is said, not retried at every line
        if not title:
            return
        try:
            self.client.call("sessions.rename", {"id": self.session_id, "title": title})
        except TekError as exc:
            self.console.say(f"the session keeps no title: {visible(exc.message)}", err=True)

    # -- the slash commands --------------------------------------------------------------------

    def _help(self, words: list[str]) -> None:
        width = max(len(usage) for usage in SLASH)
        for usage, what in SLASH.items():
            self.console.say(f"  {self.console.paint.call(usage.ljust(width))}  {what}")
        self.console.say("  (any other line goes to the model)")

    def _approvals(self, words: list[str]) -> None:
        pending = self.follower.pending()
        for item in pending:
            runs = "  ".join(what_runs(item["tool"], item["arguments"]))
            self.console.say(visible(item["id"]) + "  " + runs)
        if not pending:
            self.console.say("no tool call of this session waits for a decision")

    def _deciding(self, decision: str, words: list[str]) -> None:
        """/approve and /deny: the given approvals, or every pending one of the session; then the
        rest of the session's open turn, if it has one."""
        ids = words[1:] or [item["id"] for item in self.follower.pending()]
        if not ids:
            self.console.say("no tool call of this session waits for a decision")
        for approval_id in ids:
            self.follower.decide(approval_id, decision)
        self.follower.adopt_open_turns()
        self.follow()

    def _sessions(self, words: list[str]) -> None:
        for item in self.client.call("sessions.list")["items"]:
            mark = "*" if item["id"] == self.session_id else " "
            self.console.say(visible(f"{mark} {item['id']}  {item['title'] or '(untitled)'}"))

    def _title(self, words: list[str]) -> None:
        title = title_from(" ".join(words[1:]))
        if not title:
            self.console.say("which title? /title TEXT", err=True)
            return
        self._name(title)
        self.console.say(visible(f"this session is now titled {title!r}"))

    def _switching(self, words: list[str]) -> None:
        """/plan ALIAS, /model ALIAS [MODE], /undo: explicit, and never without a mode."""
        if words[0] in ("/model", "/undo") and self.follower.open:
            # a switch waits for the turns to end: here it would hang until one does
            self.console.say(
                "a turn is still open and a switch waits for it to end; /approvals", err=True
            )
            return
        try:
            self._switch(words)
        except TekError as exc:
            self.console.say(f"{exc.code}: {visible(exc.message)}", err=True)

    def _switch(self, words: list[str]) -> None:
        say = self.console.say
        if words[0] == "/undo":
            view = self.client.call("sessions.undo_switch", {"id": self.session_id})
            say(f"back to {visible(view['model'])} ({len(view['dropped'])} messages left out)")
            return
        if len(words) < 2:
            say(f"which model? {words[0]} ALIAS", err=True)
            return
        plan = self.client.call("sessions.plan_switch", {"id": self.session_id, "model": words[1]})
        carry = plan["options"][0]
        say(
            f"{plan['tokens']} tokens; {visible(plan['model'])} holds {plan['target_window']}: "
            + ("it fits" if plan["fits"] else "it does not fit")
            + f". carry_over leaves out {len(carry['drop'])} oldest messages "
            f"({carry['tokens_after']} tokens); fresh starts over."
        )
        if words[0] == "/plan":
            return
        mode = words[2] if len(words) > 2 else self._mode()
        if mode is None:
            return
        view = self.client.call(
            "sessions.switch", {"id": self.session_id, "model": words[1], "mode": mode}
        )
        say(f"now on {visible(view['model'])} ({len(view['dropped'])} messages left out; /undo)")

    def _mode(self) -> str | None:
        """carry_over (the default), fresh, or None to cancel."""
        while True:
            answer = self.console.read_line("mode: carry_over, fresh or cancel [carry_over]> ")
            answer = "cancel" if answer is None else answer.strip() or "carry_over"
            if answer in ("carry_over", "fresh"):
                return answer
            if answer == "cancel":
                return None
            self.console.say("answer carry_over, fresh or cancel", err=True)
