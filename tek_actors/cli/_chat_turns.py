"""What `tek chat` shows of its session's turns, and the approvals it asks about inline.

A turn is everything that answers one user message: streamed text (`session.delta`), assistant
messages with tool calls, a `session.tool_result` per call, and finally an assistant message
without tool calls or a `session.error`. TurnFollower prints them as they arrive:

    text          streamed as it comes; the journaled message decides what was said: what the
                  stream did not bring is added, and a stream cut by a gateway restart (its
                  deltas are ephemeral) is followed by the whole text on a line of its own
    tool calls    `→ shell: ls -la` per call (stdout, like the rest of the conversation)
    results       `← shell executed, exit 0: first line of output (+3 lines)`
    the end       the final text, then `[model]` (and any fallback) on stderr

An `approval.requested` for this session that is still pending when it is handled is asked about
inline: y approves, n denies, a approves and remembers (the policy allows such calls from now
on), l leaves it pending and returns to the `you>` prompt while the turn waits. Each approval is
asked about once per request (a policy change that sends it back to a person asks again).

Replays are harmless: the Client delivers each durable event once (by seq), and this class
prints each entry once by its id and asks about each approval once, so a resync after a gateway
restart, or a `sync.snapshot` (answered by reading the session and its pending approvals),
prints nothing twice and loses nothing.

Everything here runs on the main thread of `tek chat`, between the person's lines.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from tek_actors.cli._render import visible
from tek_actors.cli._transcript import call_line, result_line, what_runs
from tek_actors.client import Client
from tek_actors.errors import Conflict, TekError

__all__ = ["PROMPT", "TurnFollower"]

PROMPT = "allow? [y]es / [n]o / [a]lways / [l]ater"
_ANSWERS = {"y": "yes", "n": "no", "a": "always", "l": "later"}


def _answer(text: str) -> str:
    """y/yes, n/no, a/always, l/later (any case) -> y, n, a or l."""
    word = text.strip().lower()
    if word and word[0] in _ANSWERS and _ANSWERS[word[0]].startswith(word):
        return word[0]
    raise click.BadParameter("answer y (yes), n (no), a (always) or l (later)")


def _write(text: str) -> None:
    """A model's text as it streams: its line breaks stay, its control characters show."""
    sys.stdout.write(visible(text, lines=True))
    sys.stdout.flush()


def _label(data: dict[str, Any]) -> str:
    """`[model]` for an answer (with its fallbacks, and whether it is incomplete), or
    `[no answer: code]` for an error entry."""
    if data.get("role") == "error":
        return visible(f"[no answer: {(data.get('error') or {}).get('code')}]")
    parts = [f"[{data.get('model')}"]
    if data.get("fallback_from"):
        parts.append(f" (fallback after {', '.join(data['fallback_from'])})")
    if data.get("incomplete"):
        parts.append(", incomplete")
    return visible("".join(parts) + "]")


class TurnFollower:
    """The open turns of one session, as `tek chat` shows them. Not thread-safe: the caller's
    thread reads the Client's events through `follow` and `drain` only."""

    def __init__(self, client: Client, session_id: str) -> None:
        self.client = client
        self.session_id = session_id
        self.open: list[str] = []  # turns (user message ids) whose end was not shown yet
        self.later: set[str] = set()  # approvals asked about and not decided here yet
        self.status: dict[str, str] = {}  # this session's approvals: id -> last known status
        self._printed: set[str] = set()  # entry ids shown
        self._asked: set[tuple[str, int]] = set()  # (approval id, policy_version) asked about
        self._shown = ""  # the streamed text of the message being written

    # -- the caller's side -------------------------------------------------------------------

    def follow(self) -> None:
        """Show the open turns' events as they come; return when every open turn ended, or when
        a turn waits for a decision the person left for later. Blocks (Ctrl-C interrupts);
        may ask the person about approvals."""
        while self.open and not self.waiting_for_person():
            event = self.client.next_event(None)
            if event is not None:
                self.handle(event)

    def drain(self) -> None:
        """Show what arrived while the person was typing, without waiting for more."""
        while (event := self.client.next_event(0)) is not None:
            self.handle(event)

    def waiting_for_person(self) -> list[str]:
        """The approvals left for later that are still pending, oldest first."""
        return sorted(a for a in self.later if self.status.get(a) == "pending")

    def resume(self) -> None:
        """Take up the session as it is (for `tek chat --session`): its open turns are followed,
        and its pending approvals count as left for later (the person decides with /approve or
        /deny). Call it after `hello`, so that nothing that happens after it is missed."""
        self.adopt_open_turns()
        for item in self.pending():
            self.status[item["id"]] = "pending"
            self.later.add(item["id"])

    def adopt_open_turns(self) -> None:
        """Follow every turn the session has not ended (whoever sent its message)."""
        view = self.client.call("sessions.get", {"id": self.session_id})
        self.open += [turn for turn in view["queue"] if turn not in self.open]

    def pending(self) -> list[dict[str, Any]]:
        """This session's pending approvals, oldest first."""
        query = {"status": "pending", "session": self.session_id}
        return list(self.client.call("approvals.list", query)["items"])

    def decide(self, approval_id: str, decision: str, *, remember: bool = False) -> None:
        """approvals.decide, and say what came of it; a decision made elsewhere meanwhile (or an
        expiry) is reported, not raised."""
        payload = {"id": approval_id, "decision": decision, "remember": remember}
        try:
            result = self.client.call("approvals.decide", payload)
        except Conflict as exc:
            status = (exc.details or {}).get("status")
            if isinstance(status, str):
                self.status[approval_id] = status
            self.later.discard(approval_id)
            click.echo(f"not decided here: {visible(exc.message)}", err=True)
            return
        except TekError as exc:
            click.echo(f"not decided: {visible(exc.message)}", err=True)
            return
        self.status[approval_id] = result["status"]  # with remember, it may have run already
        self.later.discard(approval_id)
        note = ""
        if remember and result.get("remembered"):
            note = "; calls like this run without asking from now on"
        elif remember:
            note = f" (not remembered: {result.get('remember_error')})"
        verb = "approved" if decision == "approve" else "denied"
        click.echo(visible(f"{approval_id} {verb}{note}"))

    # -- events ------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        """Show one event (if it is this session's) and ask about a pending approval."""
        name = str(event.get("event"))
        data = event.get("data") or {}
        if name == "sync.snapshot":  # the events up to here are not replayed: read the state
            self._catch_up()
        elif name.startswith("approval."):
            self._approval_event(name, data)
        elif data.get("session") != self.session_id or data.get("turn") not in self.open:
            return
        elif name == "session.delta":
            self._shown += data["text"]
            _write(data["text"])
        elif name in ("session.message", "session.tool_result", "session.error"):
            self._entry(data)

    def _entry(self, data: dict[str, Any]) -> None:
        """A journaled entry of an open turn (from its event, or read after a snapshot)."""
        if data["id"] in self._printed:
            return
        self._printed.add(data["id"])
        role = data.get("role")
        if role == "tool":
            click.echo(result_line(str(data.get("name")), str(data.get("status")), data["text"]))
            return
        self._settle_text(data.get("text") or "", final=not data.get("tool_calls"))
        for call in data.get("tool_calls") or []:
            click.echo(call_line(call))
        if role == "error" or not data.get("tool_calls"):
            click.echo(_label(data), err=True)
            if data.get("turn") in self.open:
                self.open.remove(data["turn"])

    def _settle_text(self, text: str, *, final: bool) -> None:
        """Complete the streamed text with the journaled `text`, and end its line."""
        shown, self._shown = self._shown, ""
        if text.startswith(shown):
            _write(text[len(shown) :])  # what the stream did not bring
        else:
            _write(("\n" if shown else "") + text)  # the stream was cut: the whole text
        if final or text or shown:
            _write("\n")

    def _approval_event(self, name: str, data: dict[str, Any]) -> None:
        approval_id = data.get("id")
        if not isinstance(approval_id, str):
            return
        if name == "approval.requested" and data.get("session") == self.session_id:
            self.status[approval_id] = str(data.get("status"))
            if data.get("status") == "pending":
                self._ask(data)
        elif approval_id in self.status and isinstance(data.get("status"), str):
            self.status[approval_id] = data["status"]

    def _ask(self, item: dict[str, Any]) -> None:
        key = (item["id"], int(item.get("policy_version") or 0))
        if key in self._asked:
            return
        self._asked.add(key)
        self.later.add(item["id"])  # until decided: a Ctrl-C from here on leaves it for later
        # The policy may have decided it in the same breath (`auto`: the decision is the next
        # event), and a replayed request may be long decided: ask only about what still waits.
        current = self.client.call("approvals.get", {"id": item["id"]})
        self.status[item["id"]] = current["status"]
        if current["status"] != "pending":
            self.later.discard(item["id"])
            return
        lines = what_runs(current["tool"], current["arguments"])
        lines[-1] += f"  (approval {visible(current['id'])})"
        click.echo("? " + "\n  ".join(lines))
        try:
            answer = click.prompt(PROMPT, prompt_suffix=" ", value_proc=_answer)
        except click.Abort:  # Ctrl-C or the end of input: no decision
            click.echo()
            answer = "l"
        if answer == "l":  # the caller's follow() returns: the person is back at `you>`
            return
        self.decide(current["id"], "deny" if answer == "n" else "approve", remember=answer == "a")

    def _catch_up(self) -> None:
        """After a snapshot resync: the open turns' entries and the pending approvals, read
        from the gateway (what was shown already is not shown again)."""
        view = self.client.call("sessions.get", {"id": self.session_id})
        self.open += [turn for turn in view["queue"] if turn not in self.open]
        for entry in view["entries"]:
            if entry["role"] != "user" and entry.get("turn") in self.open:
                self._entry(entry)
        for item in self.pending():
            self.status[item["id"]] = "pending"
            self._ask(item)
