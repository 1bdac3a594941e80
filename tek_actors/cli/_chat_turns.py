"""What `tek chat` shows of its session's turns, and the approvals it asks about inline.

A turn is everything that answers one user message: streamed text (`session.delta`), assistant
messages with tool calls, a `session.tool_result` per call, and finally an assistant message
without tool calls or a `session.error`. TurnFollower shows them as they arrive, through the
chat's console (`_chat_console`: a terminal or a pipe):

    text          streamed as it comes; the journaled message decides what was said: what the
                  stream did not bring is added, and a stream cut by a gateway restart (its
                  deltas are ephemeral) is followed by the whole text on a line of its own
    tool calls    `→ shell: ls -la` per call (stdout, like the rest of the conversation)
    results       `← shell executed, exit 0: first line of output (+3 lines)`
    the end       the final text, then `[model]` (and any fallback) on stderr

An `approval.requested` for this session that is still pending when its turn comes is asked
about: y approves, n denies, a approves and remembers (the exact rule is said: `_transcript.
remembered_line`), l (or Ctrl-C) leaves it pending and returns to the `you>` prompt while the
turn waits, Enter shows the call's details and asks again. On a terminal one key answers, and a
question decided elsewhere meanwhile (`tek approvals approve`, another chat) or expired is put
away with what was decided. Each approval is asked about once per request (a policy change that
sends it back to a person asks again). An approval is never asked about while another question
or the `you>` prompt is up: it waits in `_to_ask` (the prompt is put away for it).

Replays are harmless: the Client delivers each durable event once (by seq), and this class
prints each entry once by its id and asks about each approval once, so a resync after a gateway
restart, or a `sync.snapshot` (answered by reading the session and its pending approvals),
prints nothing twice and loses nothing.

Everything here runs on the main thread of `tek chat` (a prompt's poll included).
"""

from __future__ import annotations

import json
from typing import Any

from tek_actors.cli._chat_console import DETAILS, PROMPT, WITHDRAWN, PlainConsole
from tek_actors.cli._render import visible, when
from tek_actors.cli._transcript import call_line, remembered_line, result_line, what_runs
from tek_actors.client import Client
from tek_actors.errors import Conflict, TekError

__all__ = ["PROMPT", "TurnFollower"]

_WAIT_S = 0.25  # a follow() wakes this often: Ctrl-C, and the spinner's start, never wait long


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
    thread reads the Client's events through `follow`, `drain` and `poll` only."""

    def __init__(self, client: Client, session_id: str, console: PlainConsole) -> None:
        self.client = client
        self.session_id = session_id
        self.console = console
        self.paint = console.paint
        self.open: list[str] = []  # turns (user message ids) whose end was not shown yet
        self.later: set[str] = set()  # approvals asked about and not decided here yet
        self.status: dict[str, str] = {}  # this session's approvals: id -> last known status
        self._printed: set[str] = set()  # entry ids shown
        self._asked: set[tuple[str, int]] = set()  # (approval id, policy_version) asked about
        self._to_ask: list[str] = []  # approvals to ask about once no question is up
        self._decisions: dict[str, dict[str, Any]] = {}  # approval id -> its decision's event
        self._shown = ""  # the streamed text of the message being written

    # -- the caller's side -------------------------------------------------------------------

    def follow(self) -> None:
        """Show the open turns' events as they come; return when every open turn ended, or when
        a turn waits for a decision the person left for later. Blocks (Ctrl-C interrupts);
        asks the person about approvals."""
        self.ask_waiting()
        while self.open and not self.waiting_for_person():
            if not self._shown:  # between lines: the model (or a tool) is being waited for
                self.console.thinking()
            event = self.client.next_event(_WAIT_S)
            if event is not None:
                self.handle(event)
                self.ask_waiting()

    def drain(self) -> None:
        """Show what arrived while the person was typing, without waiting for more."""
        while (event := self.client.next_event(0)) is not None:
            self.handle(event)

    def poll(self) -> bool:
        """For the `you>` prompt's poll: show what arrived; True when an approval waits to be
        asked (the prompt is put away for `ask_waiting`)."""
        self.drain()
        return bool(self._to_ask)

    def ask_waiting(self) -> None:
        """Ask about every approval that came while no question could be asked."""
        while self._to_ask:
            self._ask(self._to_ask.pop(0))

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
            self._asked.add((item["id"], int(item.get("policy_version") or 0)))

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
            self.console.say(f"not decided here: {visible(exc.message)}", err=True)
            return
        except TekError as exc:
            self.console.say(f"not decided: {visible(exc.message)}", err=True)
            return
        self.status[approval_id] = result["status"]  # with remember, it may have run already
        self.later.discard(approval_id)
        note = ""
        if remember and result.get("remembered"):
            note = " and remembered: " + remembered_line(
                result["tool"], result["arguments"], decision
            )
        elif remember:
            note = f" (not remembered: {visible(result.get('remember_error'))})"
        verb = "approved" if decision == "approve" else "denied"
        self.console.say(self.paint.ask(visible(f"{approval_id} {verb}")) + note)

    # -- events ------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        """Show one event (if it is this session's); a pending approval is queued to be asked
        (`ask_waiting`)."""
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
            self.console.stream(visible(data["text"], lines=True))
        elif name in ("session.message", "session.tool_result", "session.error"):
            self._entry(data)

    def _entry(self, data: dict[str, Any]) -> None:
        """A journaled entry of an open turn (from its event, or read after a snapshot)."""
        if data["id"] in self._printed:
            return
        self._printed.add(data["id"])
        role = data.get("role")
        if role == "tool":
            line = result_line(str(data.get("name")), str(data.get("status")), data["text"])
            self.console.say(self.paint.result(line))
            return
        self._settle_text(data.get("text") or "", final=not data.get("tool_calls"))
        for call in data.get("tool_calls") or []:
            self.console.say(self.paint.call(call_line(call)))
        if role == "error" or not data.get("tool_calls"):
            label = _label(data)
            self.console.say(
                self.paint.error(label) if role == "error" else self.paint.quiet(label), err=True
            )
            if data.get("turn") in self.open:
                self.open.remove(data["turn"])

    def _settle_text(self, text: str, *, final: bool) -> None:
        """Complete the streamed text with the journaled `text`, and end its line."""
        shown, self._shown = self._shown, ""
        # What the stream did not bring; or, when the stream was cut, the whole text anew.
        cut = not text.startswith(shown)
        rest = ("\n" if shown else "") + text if cut else text[len(shown) :]
        if final or text or shown:
            rest += "\n"
        if rest:
            self.console.stream(visible(rest, lines=True))

    def _approval_event(self, name: str, data: dict[str, Any]) -> None:
        approval_id = data.get("id")
        if not isinstance(approval_id, str):
            return
        if name == "approval.requested" and data.get("session") == self.session_id:
            self.status[approval_id] = str(data.get("status"))
            if data.get("status") == "pending":
                self._queue_ask(approval_id, data.get("policy_version"))
        elif approval_id in self.status and isinstance(data.get("status"), str):
            self.status[approval_id] = data["status"]
            if name in ("approval.decided", "approval.expired"):
                self._decisions[approval_id] = data

    def _queue_ask(self, approval_id: str, policy_version: Any) -> None:
        key = (approval_id, int(policy_version or 0))
        if key in self._asked:
            return
        self._asked.add(key)
        self.later.add(approval_id)  # until decided: a Ctrl-C from here on leaves it for later
        self._to_ask.append(approval_id)

    def _ask(self, approval_id: str) -> None:
        # The policy may have decided it in the same breath (`auto`: the decision is the next
        # event), and a replayed request may be long decided: ask only about what still waits.
        current = self.client.call("approvals.get", {"id": approval_id})
        self.status[approval_id] = current["status"]
        if current["status"] != "pending":
            self.later.discard(approval_id)
            return
        lines = what_runs(current["tool"], current["arguments"])
        lines[-1] += f"  (approval {visible(approval_id)})"
        self.console.say(self.paint.ask("? ") + "\n  ".join(lines))
        while (
            answer := self.console.ask_key(
                self.paint.ask(PROMPT), withdrawn=lambda: self._withdrawn(approval_id)
            )
        ) == DETAILS:
            self._details(current)
        if answer == WITHDRAWN:
            self.later.discard(approval_id)
            self.console.say(self._decided_elsewhere(approval_id))
        elif answer != "l":  # l: the caller's follow() returns, the person is back at `you>`
            decision = "deny" if answer == "n" else "approve"
            self.decide(approval_id, decision, remember=answer == "a")

    def _withdrawn(self, approval_id: str) -> bool:
        """While the question is up: show what arrives; True once it was decided (or expired)
        elsewhere. Events after the decision wait: they are shown after what was decided."""
        while self.status.get(approval_id) == "pending":
            event = self.client.next_event(0)
            if event is None:
                return False
            self.handle(event)
        return True

    def _decided_elsewhere(self, approval_id: str) -> str:
        data = self._decisions.get(approval_id) or {}
        status = str(data.get("status") or self.status.get(approval_id))
        reason = f" ({data['reason']})" if data.get("reason") else ""
        if status == "expired":
            return self.paint.warn(visible(f"{approval_id} expired{reason}"))
        return self.paint.ask(visible(f"{approval_id} was {status} elsewhere{reason}"))

    def _details(self, item: dict[str, Any]) -> None:
        """Enter at the question: everything about the call, and what each answer does."""
        arguments = item["arguments"]
        lines = [
            f"  tool {visible(item['tool'])}, approval {visible(item['id'])}, requested "
            f"{when(item.get('requested_at'))}, expires {when(item.get('expires_at')) or 'never'}",
            "  arguments " + visible(json.dumps(arguments, ensure_ascii=False)),
            "  y runs it once; n refuses it; l leaves it pending (/approve, /deny later)",
            "  a runs it and remembers: " + remembered_line(item["tool"], arguments, "approve"),
        ]
        for line in lines:
            self.console.say(self.paint.quiet(line))

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
            self._queue_ask(item["id"], item.get("policy_version"))
