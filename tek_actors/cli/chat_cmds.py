"""`tek chat` and `tek sessions list|show`.

`tek chat` talks to one session: it starts the gateway if none runs, sends each line you type
(durably: the client's outbox keeps it until the gateway has it), prints the answer as it
streams, and says which model answered. Across a gateway restart it reconnects and resyncs; an
answer whose streamed text was cut by the restart is printed whole from its journaled message,
never twice.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.table import Table

from tek_actors.cli._output import Output, fail, gateway_client
from tek_actors.cli.gateway_cmds import start as start_gateway
from tek_actors.client import Client
from tek_actors.errors import TekError

__all__ = ["chat", "sessions"]

HELP = "commands: /model ALIAS [carry_over|fresh], /plan ALIAS, /undo, /sessions, /quit"


@click.command()
@click.option("--session", "session_id", default=None, help="Continue this session.")
@click.option("--model", default=None, help="Model alias for a new session.")
@click.pass_context
def chat(ctx: click.Context, session_id: str | None, model: str | None) -> None:
    """Talk with a model. Starts the gateway if none runs."""
    out: Output = ctx.obj
    if out.endpoint is None and out.home.read_connection() is None:
        ctx.invoke(start_gateway, timeout=60.0, endpoint=None)
    outbox = out.home.state_dir / "chat-outbox.db"
    try:
        client = Client(out.endpoint, home=out.home, token=out.token, outbox=outbox, timeout=60)
    except TekError as exc:
        fail(out, exc)
    try:
        if session_id is None:
            session_id = client.call("sessions.create", {"model": model})["id"]
            click.echo(f"new session {session_id}; {HELP}")
        else:
            got = client.call("sessions.get", {"id": session_id})
            click.echo(f"session {session_id}: {got['count']} entries; {HELP}")
        head = client.ping()["head_seq"]
        client.hello(since_seq=head, topics=["session.delta", "session.message", "session.error"])
        _converse(client, session_id)
    except TekError as exc:
        fail(out, exc)
    finally:
        client.close()


def _converse(client: Client, session_id: str) -> None:
    while True:
        try:
            text = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except click.Abort:
            click.echo()
            return
        text = text.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text == "/sessions":
            for item in client.call("sessions.list")["items"]:
                mark = "*" if item["id"] == session_id else " "
                click.echo(f"{mark} {item['id']}  {item['title'] or '(untitled)'}")
            continue
        if text.startswith(("/model", "/plan", "/undo")):
            _switching(client, session_id, text.split())
            continue
        if text.startswith("/"):
            click.echo(f"unknown command {text.split()[0]}; {HELP}")
            continue
        sent = client.call("sessions.send", {"id": session_id, "text": text})
        _print_answer(client, session_id, sent["message_id"])


def _switching(client: Client, session_id: str, words: list[str]) -> None:
    """/plan ALIAS, /model ALIAS [MODE], /undo: explicit, and never without a mode."""
    try:
        if words[0] == "/undo":
            view = client.call("sessions.undo_switch", {"id": session_id})
            click.echo(f"back to {view['model']} ({len(view['dropped'])} messages left out)")
            return
        if len(words) < 2:
            click.echo(f"which model? {HELP}")
            return
        plan = client.call("sessions.plan_switch", {"id": session_id, "model": words[1]})
        carry = plan["options"][0]
        click.echo(
            f"{plan['tokens']} tokens; {plan['model']} holds {plan['target_window']}: "
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
        click.echo(f"now on {view['model']} ({len(view['dropped'])} messages left out; /undo)")
    except TekError as exc:
        click.echo(f"{exc.code}: {exc.message}", err=True)


def _print_answer(client: Client, session_id: str, turn: str) -> None:
    """Stream the answer to `turn`; the journaled message decides what was really said."""
    shown = ""
    for event in client.events(timeout=None):
        data = event.get("data") or {}
        if data.get("session") != session_id or data.get("turn") != turn:
            continue
        if event["event"] == "session.delta":
            shown += data["text"]
            sys.stdout.write(data["text"])
            sys.stdout.flush()
            continue
        final = data.get("text", "")
        if event["event"] == "session.message" and final.startswith(shown):
            sys.stdout.write(final[len(shown) :])  # what the stream did not bring
        elif shown:
            sys.stdout.write("\n" + final)  # the stream was cut by a restart: the whole answer
        else:
            sys.stdout.write(final)
        sys.stdout.write("\n")
        click.echo(_label(event["event"], data), err=True)
        return


def _label(kind: str, data: dict[str, Any]) -> str:
    if kind == "session.error":
        return f"[no answer: {data.get('error', {}).get('code')}]"
    parts = [f"[{data.get('model')}"]
    if data.get("fallback_from"):
        parts.append(f" (fallback after {', '.join(data['fallback_from'])})")
    if data.get("incomplete"):
        parts.append(", incomplete")
    return "".join(parts) + "]"


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
    table = Table("id", "title", "model", "created", "live")
    for item in result["items"]:
        table.add_row(
            item["id"],
            item["title"],
            item["model"] or "(default)",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(item["created_at"])),
            "yes" if item["live"] else "",
        )
    out.console.print(table)


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.pass_obj
def show(out: Output, session_id: str) -> None:
    """A session's conversation."""
    with gateway_client(out) as client:
        result = client.call("sessions.get", {"id": session_id})
    if out.json:
        out.emit(result)
        return
    for entry in result["entries"]:
        who = entry["role"] if entry["role"] != "assistant" else entry.get("model") or "model"
        click.echo(f"{who}> {entry['text']}")


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
                f"{plan['tokens']} tokens; {model} holds {plan['target_window']}: "
                + ("it fits" if plan["fits"] else "it does not fit")
                + f". --mode carry_over leaves out {len(carry['drop'])} oldest messages; "
                "--mode fresh starts over.",
            )
            return
        view = client.call("sessions.switch", {"id": session_id, "model": model, "mode": mode})
    out.done(view, f"{session_id} is on {view['model']} ({len(view['dropped'])} left out)")


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.pass_obj
def undo(out: Output, session_id: str) -> None:
    """Undo the last model switch of session ID."""
    with gateway_client(out) as client:
        view = client.call("sessions.undo_switch", {"id": session_id})
    out.done(view, f"{session_id} is back on {view['model']} ({len(view['dropped'])} left out)")
