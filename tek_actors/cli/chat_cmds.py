"""`tek chat` and `tek sessions list|show|switch|undo|rename|delete`.

`tek chat` talks to one session: it starts the gateway if none runs, creates a session whose
tools work in the current folder (or continues one with `--session ID`, showing its last
entries first), sends each line you type (durably: the client's outbox keeps it until the
gateway has it), and follows the turn it starts to its end (`_chat_turns.TurnFollower`):
streamed text, the model's tool calls and their results one line each, a question for every
call that waits for a person, and which model answered. Across a gateway restart it reconnects
and resyncs; nothing is shown twice or lost. A gateway that dies is said at once ("gateway
down, reconnecting…", `_gateway_watch`), and so is its return.

On a terminal the `you>` line is prompt_toolkit's (`_chat_terminal`: editing, history, single
keys, colour, a spinner); through pipes it is plain lines (`_chat_console`). The slash commands
are `_chat_commands.SLASH`; docs/chat.md is the guide.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from tek_actors.cli._chat_commands import HINT, Conversation
from tek_actors.cli._chat_console import PlainConsole, open_console
from tek_actors.cli._chat_turns import TurnFollower
from tek_actors.cli._gateway_watch import GatewayWatch
from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._output import Output, fail, gateway_client
from tek_actors.cli._render import print_table, visible, when
from tek_actors.cli._transcript import transcript
from tek_actors.cli.gateway_cmds import start as start_gateway
from tek_actors.client import Client
from tek_actors.errors import TekError

__all__ = ["chat", "sessions"]

RESUME_LINES = 6  # what `tek chat --session` shows of where the conversation was
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
    console = open_console(out.home)
    watch: Any = (
        GatewayWatch(out.home, say=console.notice)
        if out.endpoint is None
        else contextlib.nullcontext()
    )
    try:
        try:
            with watch:
                _open(client, console, session_id, model)
        finally:
            console.close()  # the terminal is given back before any error is said
    except TekError as exc:
        fail(out, exc)
    finally:
        client.close()


def _open(client: Client, console: PlainConsole, session_id: str | None, model: str | None) -> None:
    """Create a session (or take up `session_id`), then converse until /quit."""
    resuming = session_id is not None
    title = ""
    if session_id is None:
        created = client.call("sessions.create", {"model": model, "cwd": os.getcwd()})
        session_id = str(created["id"])
        console.say(f"new session {visible(session_id)}; {HINT}")
    # Subscribed before the session is read: whatever happens after the read is an event.
    client.hello(since_seq=client.ping()["head_seq"], topics=TOPICS)
    follower = TurnFollower(client, session_id, console)
    if resuming:
        title = _resumed(client, console, session_id)
        follower.resume()
    conversation = Conversation(client, follower, titled=bool(title))
    if resuming:
        conversation.follow()
    conversation.run()


def _resumed(client: Client, console: PlainConsole, session_id: str) -> str:
    """Say which session this is and where it was (its last lines); its title."""
    got = client.call("sessions.get", {"id": session_id})  # not_found for an unknown id
    meta = _meta(client, session_id) or {}
    title = str(meta.get("title") or "")
    named = f" {title!r}" if title else ""
    lines = transcript(got["entries"])
    console.say(visible(f"session {session_id}{named}: {got['count']} entries") + f"; {HINT}")
    if len(lines) > RESUME_LINES:
        console.say(console.paint.quiet(f"… {len(lines) - RESUME_LINES} lines before these"))
    for line in lines[-RESUME_LINES:]:
        console.say(console.paint.quiet(line))
    return title


def _meta(client: Client, session_id: str) -> dict[str, Any] | None:
    """A session's entry in sessions.list (title, model, created), or None."""
    for item in client.call("sessions.list")["items"]:
        if item["id"] == session_id:
            return dict(item)
    return None


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


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.argument("title")
@click.pass_obj
def rename(out: Output, session_id: str, title: str) -> None:
    """Give session ID the title TITLE."""
    with gateway_client(out) as client:
        result = client.call("sessions.rename", {"id": session_id, "title": title})
    out.done(result, f"{session_id} is now titled {title!r}")


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (on a terminal).")
@click.pass_obj
def delete(out: Output, session_id: str, yes: bool) -> None:
    """Delete session ID and its conversation (asks first on a terminal, unless --yes)."""
    with gateway_client(out) as client:
        meta = _meta(client, session_id)
        # An unknown id asks nothing: the gateway's answer says not_found (exit 1).
        if meta is not None and not yes and not out.json and sys.stdin.isatty():
            title = f" {meta['title']!r}" if meta.get("title") else " (untitled)"
            question = visible(
                f"delete session {session_id}{title} from {when(meta['created_at'])}?"
            )
            if not click.confirm(question, default=False):
                click.echo("nothing deleted")
                return
        result = client.call("sessions.delete", {"id": session_id})
    out.done(result, f"{session_id} deleted")
