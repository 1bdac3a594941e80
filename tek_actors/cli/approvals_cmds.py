"""`tek approvals list|approve|deny|watch`."""

from __future__ import annotations

from typing import Any

import click

from tek_actors.cli._output import Output, gateway_client
from tek_actors.cli._render import print_table, visible, when
from tek_actors.cli._transcript import describe, remembered_line, what_runs
from tek_actors.client import Client
from tek_actors.errors import TekError

__all__ = ["approvals"]

STATUSES = ["pending", "approved", "denied", "expired", "running", "executed", "failed", "unknown"]


@click.group()
def approvals() -> None:
    """Tool calls waiting for a person, and what was decided."""


@approvals.command(name="list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--session", default=None, help="Only this session's calls.")
@click.pass_obj
def list_(out: Output, status: str | None, session: str | None) -> None:
    """Approvals, oldest first (all of them, or one status)."""
    with gateway_client(out) as client:
        result = client.call("approvals.list", {"status": status, "session": session})
    if out.json:
        out.emit(result)
        return
    print_table(
        ["id", "status", "session", "call", "requested", "by", "reason"],
        [
            [
                item["id"],
                item["status"],
                item["session"],
                describe(item["tool"], item["arguments"]),  # whole: what would run
                when(item["requested_at"]),
                item["decided_by"] or "",
                item["reason"] or "",
            ]
            for item in result["items"]
        ],
    )
    click.echo(f"policy version {result['policy_version']}")


def _decide(out: Output, client: Client, item_id: str, decision: str, remember: bool) -> None:
    result = client.call(
        "approvals.decide", {"id": item_id, "decision": decision, "remember": remember}
    )
    note = ""
    if remember and result.get("remembered"):
        note = " and remembered: " + remembered_line(result["tool"], result["arguments"], decision)
    elif remember:
        note = f" (not remembered: {visible(result.get('remember_error'))})"
    out.done(result, visible(f"{item_id}: {result['status']}") + note)


@approvals.command()
@click.argument("item_id", metavar="ID")
@click.option(
    "--remember",
    is_flag=True,
    help="Also allow from now on every call whose command starts with this one's words "
    "(each word whole), or, for a tool without a command, every call of the tool.",
)
@click.pass_obj
def approve(out: Output, item_id: str, remember: bool) -> None:
    """Approve a pending tool call."""
    with gateway_client(out) as client:
        _decide(out, client, item_id, "approve", remember)


@approvals.command()
@click.argument("item_id", metavar="ID")
@click.option(
    "--remember",
    is_flag=True,
    help="Also refuse from now on every call whose command starts with this one's words "
    "(each word whole), or, for a tool without a command, every call of the tool.",
)
@click.pass_obj
def deny(out: Output, item_id: str, remember: bool) -> None:
    """Deny a pending tool call."""
    with gateway_client(out) as client:
        _decide(out, client, item_id, "deny", remember)


@approvals.command()
@click.option("--once", is_flag=True, help="Ask about what is pending now, then stop.")
@click.pass_obj
def watch(out: Output, once: bool) -> None:
    """Ask about each pending tool call, now and as new ones arrive (Ctrl-C to stop)."""
    with gateway_client(out, timeout=30) as client:
        client.hello(topics=["approval.requested"])
        asked: set[str] = set()
        pending = client.call("approvals.list", {"status": "pending"})["items"]
        try:
            for item in pending:
                _prompt(out, client, item, asked)
            if once:
                return
            for event in client.events(timeout=None):
                if event.get("event") == "approval.requested":
                    _prompt(out, client, event["data"], asked)
        except (KeyboardInterrupt, click.Abort):
            return


def _prompt(out: Output, client: Client, item: dict[str, Any], asked: set[str]) -> None:
    if item["id"] in asked or item.get("status") != "pending":
        return
    asked.add(item["id"])
    lines = what_runs(item["tool"], item["arguments"])
    click.echo(f"\n{visible(item['id'])} from session {visible(item['session'])}: " + lines[0])
    for line in lines[1:]:
        click.echo("  " + line)
    answer = click.prompt(
        "approve, deny, always (approve; this command's words first then any run without "
        "asking from now on), never (deny, likewise refused), skip",
        type=click.Choice(["approve", "deny", "always", "never", "skip"]),
        default="skip",
    )
    if answer == "skip":
        return
    decision = "approve" if answer in ("approve", "always") else "deny"
    try:
        _decide(out, client, item["id"], decision, answer in ("always", "never"))
    except TekError as exc:  # decided elsewhere meanwhile, or expired: say so and go on
        click.echo(f"not decided: {visible(exc.message)}", err=True)
