"""`tek chat` and `tek sessions list|show|switch|undo`.

`tek chat` talks to one session: it starts the gateway if none runs, creates a session whose
tools work in the current folder (or continues one), sends each line you type (durably: the
client's outbox keeps it until the gateway has it), and follows the turn it starts to its end
(`_chat_turns.TurnFollower`): streamed text, the model's tool calls and their results one line
each, an inline prompt for every call that waits for a person, and which model answered. Across
a gateway restart it reconnects and resyncs; nothing is shown twice or lost.
A gateway that dies is said at once ("gateway down, reconnecting…", `_gateway_watch`), and so
is its return.

Slash commands: /approve [ID...] and /deny [ID...] (no ID: every pending call of the session),
then the rest of the turn; /approvals; /model, /plan, /undo; /sessions; /quit.
"""

from __future__ import annotations

import contextlib
import os

import click

from tek_actors.cli._chat_turns import TurnFollower
from tek_actors.cli._gateway_watch import GatewayWatch
from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._output import Output, fail, gateway_client
from tek_actors.cli._render import print_table, visible, when
from tek_actors.cli._transcript import transcript, what_runs
from tek_actors.cli.gateway_cmds import start as start_gateway
from tek_actors.client import Client
from tek_actors.errors import TekError

__all__ = ["chat", "sessions"]

HELP = (
    "commands: /approvals, /approve [ID], /deny [ID], /model ALIAS [carry_over|fresh], "
    "/plan ALIAS, /undo, /sessions, /quit"
)
TOPICS = [
    "session.delta",
    "session.message",
    "session.error",
    "session.tool_result",
    "approval.*",
]


@click.command()
@click.option("--session", "session_id", default=None, help="Continue this session.")
@click.option("--model", default=None, help="Model alias for a new session.")
@click.pass_context
def chat(ctx: click.Context, session_id: str | None, model: str | None) -> None:
    """Talk with a model; its tools work in the current folder. Starts the gateway if none
    runs."""
    out: Output = ctx.obj
    if out.endpoint is None:
        info = out.home.read_connection()
        if info is None or stale_gateway(info) is not None:  # none, or killed: start one
            ctx.invoke(start_gateway, timeout=60.0, endpoint=None)
    outbox = out.home.state_dir / "chat-outbox.db"
    try:
        client = Client(out.endpoint, home=out.home, outbox=outbox, timeout=60)
    except TekError as exc:
        fail(out, exc)
    watch = GatewayWatch(out.home) if out.endpoint is None else contextlib.nullcontext()
    try:
        with watch:
            _open(client, session_id, model)
    except TekError as exc:
        fail(out, exc)
    finally:
        client.close()


def _open(client: Client, session_id: str | None, model: str | None) -> None:
    """Create a session (or take up `session_id`), then converse until /quit."""
    resuming = session_id is not None
    if session_id is None:
        created = client.call("sessions.create", {"model": model, "cwd": os.getcwd()})
        session_id = str(created["id"])
        click.echo(f"new session {visible(session_id)}; {HELP}")
    # Subscribed before the session is read: whatever happens after the read is an event.
    client.hello(since_seq=client.ping()["head_seq"], topics=TOPICS)
    follower = TurnFollower(client, session_id)
    if resuming:
        got = client.call("sessions.get", {"id": session_id})
        click.echo(f"session {visible(session_id)}: {got['count']} entries; {HELP}")
        follower.resume()
        _follow(follower)
    _converse(client, follower)


def _converse(client: Client, follower: TurnFollower) -> None:
    session_id = follower.session_id
    while True:
        try:
            text = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except click.Abort:
            click.echo()
            return
        text = text.strip()
        if text in ("/quit", "/exit"):
            return
        follower.drain()  # what happened while the person was typing
        if not text:
            continue
        words = text.split()
        if words[0] == "/sessions":
            for item in client.call("sessions.list")["items"]:
                mark = "*" if item["id"] == session_id else " "
                click.echo(visible(f"{mark} {item['id']}  {item['title'] or '(untitled)'}"))
        elif words[0] in ("/model", "/undo") and follower.open:
            # a switch waits for the turns to end: here it would hang until one does
            click.echo(
                "a turn is still open and a switch waits for it to end; /approvals", err=True
            )
        elif words[0] in ("/model", "/plan", "/undo"):
            _switching(client, session_id, words)
        elif words[0] == "/approvals":
            pending = follower.pending()
            for item in pending:
                click.echo(
                    visible(item["id"])
                    + "  "
                    + "  ".join(what_runs(item["tool"], item["arguments"]))
                )
            if not pending:
                click.echo("no tool call of this session waits for a decision")
        elif words[0] in ("/approve", "/deny"):
            _deciding(follower, "approve" if words[0] == "/approve" else "deny", words[1:])
        elif text.startswith("/"):
            click.echo(f"unknown command {visible(words[0])}; {HELP}")
        else:
            sent = client.call("sessions.send", {"id": session_id, "text": text})
            follower.open.append(sent["message_id"])
            _follow(follower)


def _deciding(follower: TurnFollower, decision: str, ids: list[str]) -> None:
    """/approve and /deny: the given approvals, or every pending one of the session; then the
    rest of the session's open turn, if it has one."""
    if not ids:
        ids = [item["id"] for item in follower.pending()]
        if not ids:
            click.echo("no tool call of this session waits for a decision")
    for approval_id in ids:
        follower.decide(approval_id, decision)
    follower.adopt_open_turns()
    _follow(follower)


def _follow(follower: TurnFollower) -> None:
    """Follow the open turns, unless they wait for a call the person left for later; Ctrl-C
    goes back to the prompt (the turn goes on in the gateway)."""
    if _say_waiting(follower):
        return
    try:
        follower.follow()
    except KeyboardInterrupt:
        click.echo("\n(the turn goes on; what it does is shown after your next line)", err=True)
    _say_waiting(follower)


def _say_waiting(follower: TurnFollower) -> bool:
    waiting = follower.waiting_for_person()
    if waiting and follower.open:
        click.echo(
            f"(the session waits for your decision on {visible(', '.join(waiting))}: "
            "/approve or /deny, /approvals)",
            err=True,
        )
    return bool(waiting)


def _switching(client: Client, session_id: str, words: list[str]) -> None:
    """/plan ALIAS, /model ALIAS [MODE], /undo: explicit, and never without a mode."""
    try:
        if words[0] == "/undo":
            view = client.call("sessions.undo_switch", {"id": session_id})
            click.echo(
                f"back to {visible(view['model'])} ({len(view['dropped'])} messages left out)"
            )
            return
        if len(words) < 2:
            click.echo(f"which model? {HELP}")
            return
        plan = client.call("sessions.plan_switch", {"id": session_id, "model": words[1]})
        carry = plan["options"][0]
        click.echo(
            f"{plan['tokens']} tokens; {visible(plan['model'])} holds {plan['target_window']}: "
            + ("it fits" if plan["fits"] else "it does not fit")
            + f". carry_over leaves out {len(carry['drop'])} oldest messages "
            f"({carry['tokens_after']} tokens); fresh starts over."
        )
        if words[0] == "/plan":
            return
        mode = (
            words[2]
            if len(words) > 2
            else click.prompt(
                "mode", type=click.Choice(["carry_over", "fresh", "cancel"]), default="carry_over"
            )
        )
        if mode == "cancel":
            return
        view = client.call("sessions.switch", {"id": session_id, "model": words[1], "mode": mode})
        click.echo(
            f"now on {visible(view['model'])} ({len(view['dropped'])} messages left out; /undo)"
        )
    except TekError as exc:
        click.echo(f"{exc.code}: {visible(exc.message)}", err=True)


@click.group()
def sessions() -> None:
    """Stored conversations."""


@sessions.command(name="list")
@click.pass_obj
def list_(out: Output) -> None:
    """Every session, oldest first."""
    with gateway_client(out) as client:
        result = client.call("sessions.list")
    if out.json:
        out.emit(result)
        return
    print_table(
        ["id", "title", "model", "created", "live"],
        [
            [
                item["id"],
                item["title"] or "",
                item["model"] or "(default)",
                when(item["created_at"]),
                "yes" if item["live"] else "",
            ]
            for item in result["items"]
        ],
    )


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.pass_obj
def show(out: Output, session_id: str) -> None:
    """A session's conversation, one line per message, tool call and tool result."""
    with gateway_client(out) as client:
        result = client.call("sessions.get", {"id": session_id})
    if out.json:
        out.emit(result)
        return
    for line in transcript(result["entries"]):
        click.echo(line)


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.argument("model")
@click.option(
    "--mode",
    type=click.Choice(["carry_over", "fresh"]),
    default=None,
    help="Required to switch; without it, only the plan is shown.",
)
@click.pass_obj
def switch(out: Output, session_id: str, model: str, mode: str | None) -> None:
    """Show what switching session ID to MODEL means; with --mode, switch."""
    with gateway_client(out) as client:
        plan = client.call("sessions.plan_switch", {"id": session_id, "model": model})
        if mode is None:
            carry = plan["options"][0]
            out.done(
                plan,
                f"{plan['tokens']} tokens; {visible(model)} holds {plan['target_window']}: "
                + ("it fits" if plan["fits"] else "it does not fit")
                + f". --mode carry_over leaves out {len(carry['drop'])} oldest messages; "
                "--mode fresh starts over.",
            )
            return
        view = client.call("sessions.switch", {"id": session_id, "model": model, "mode": mode})
    out.done(
        view,
        visible(f"{session_id} is on {view['model']} ({len(view['dropped'])} left out)"),
    )


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.pass_obj
def undo(out: Output, session_id: str) -> None:
    """Undo the last model switch of session ID."""
    with gateway_client(out) as client:
        view = client.call("sessions.undo_switch", {"id": session_id})
    out.done(
        view,
        visible(f"{session_id} is back on {view['model']} ({len(view['dropped'])} left out)"),
    )
