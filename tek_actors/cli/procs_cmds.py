"""`tek procs run|list|logs|kill|rm`."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from tek_actors.cli._output import Output, gateway_client
from tek_actors.cli._render import argv_line, print_table, visible, when
from tek_actors.client import Client

__all__ = ["procs"]


@click.group()
def procs() -> None:
    """Processes the gateway runs and watches (they outlive gateway restarts)."""


@procs.command(context_settings={"ignore_unknown_options": True})
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--cwd", type=click.Path(file_okay=False), help="Folder to run in (default: here).")
@click.option("--env", "env", multiple=True, help="NAME=VALUE for the process; repeatable.")
@click.pass_obj
def run(out: Output, argv: tuple[str, ...], cwd: str | None, env: tuple[str, ...]) -> None:
    """Start ARGV (after `--`): `tek procs run -- make test`."""
    extra: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        extra[name] = value
    payload: dict[str, Any] = {"argv": list(argv), "cwd": os.path.abspath(cwd or os.getcwd())}
    if extra:
        payload["env"] = extra
    with gateway_client(out) as client:
        result = client.call("procs.start", payload)
    shown = visible(result["id"])
    out.done(result, f"started {shown} (pid {result['pid']}); `tek procs logs {shown} -f`")


@procs.command(name="list")
@click.option("--state", type=click.Choice(["running", "exited", "lost"]), default=None)
@click.pass_obj
def list_(out: Output, state: str | None) -> None:
    """The processes the gateway knows, oldest first."""
    with gateway_client(out) as client:
        result = client.call("procs.list", {"state": state})
    if out.json:
        out.emit(result)
        return
    rows = []
    for p in result["items"]:
        ended = p["exit_code"] if p["signal"] is None else f"signal {p['signal']}"
        rows.append(
            [
                p["id"],
                p["pid"],
                p["state"],
                "" if p["state"] == "running" else ended,
                p["lines"],
                when(p["started_at"]),
                argv_line(p["argv"]),  # whole: a cut command is not the one that ran
            ]
        )
    print_table(["id", "pid", "state", "exit", "lines", "started", "command"], rows)


def _print_line(out: Output, line: dict[str, Any]) -> None:
    if out.json:
        out.emit(line)
        return
    stream = sys.stderr if line["stream"] == "stderr" else sys.stdout
    # A terminal is shown the output's escapes (a tool's ANSI codes or `\r` do not act on it);
    # a pipe or a file gets the bytes as the process wrote them.
    text = visible(line["text"], lines=True) if stream.isatty() else line["text"]
    stream.write(text + "\n")
    stream.flush()


def _page(out: Output, client: Client, proc_id: str, since: int) -> tuple[int, dict[str, Any]]:
    """Print every retained line after `since`; (the last number printed, the last reply)."""
    while True:
        reply = client.call("procs.logs", {"id": proc_id, "since": since, "limit": 1000})
        for line in reply["lines"]:
            _print_line(out, line)
        since = max(since, reply["next"])
        if since >= reply["last"]:
            return since, reply


def _ending(out: Output, reply: dict[str, Any]) -> None:
    if out.json:
        return
    how = f"signal {reply['signal']}" if reply.get("signal") else f"exit code {reply['exit_code']}"
    click.echo(f"[{visible(reply['id'])} {reply['state']}: {how}]", err=True)


@procs.command()
@click.argument("proc_id", metavar="ID")
@click.option("--since", type=click.IntRange(min=0), default=0, help="Lines after this number.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the process ends.")
@click.pass_obj
def logs(out: Output, proc_id: str, since: int, follow: bool) -> None:
    """Print a process's output (stdout to stdout, stderr to stderr), numbered lines in order.

    With -f it follows, also across gateway restarts, with no line twice and none missing."""
    with gateway_client(out, timeout=30) as client:
        if follow:  # subscribe first, so nothing published during the first page is missed
            client.hello(topics=["proc.output", "proc.exited"])
        last, reply = _page(out, client, proc_id, since)
        if reply["state"] != "running":
            _ending(out, reply)
            return
        if not follow:
            return
        try:
            for event in client.events(timeout=None):
                data = event.get("data") or {}
                if data.get("id") != proc_id:
                    continue
                if event["event"] == "proc.output":
                    for line in data["lines"]:
                        if line["n"] > last:
                            _print_line(out, line)
                            last = line["n"]
                elif event["event"] == "proc.exited":
                    last, reply = _page(out, client, proc_id, last)
                    _ending(out, reply)
                    return
        except KeyboardInterrupt:
            return


@procs.command()
@click.argument("proc_id", metavar="ID")
@click.option(
    "--signal",
    "sig",
    type=click.Choice(["TERM", "KILL", "INT", "HUP", "QUIT"]),
    default="TERM",
    show_default=True,
)
@click.option(
    "--grace-ms",
    type=click.IntRange(0, 600_000),
    default=5000,
    show_default=True,
    help="Then KILL.",
)
@click.pass_obj
def kill(out: Output, proc_id: str, sig: str, grace_ms: int) -> None:
    """Signal a process's whole group (TERM, then KILL after the grace)."""
    with gateway_client(out) as client:
        result = client.call("procs.kill", {"id": proc_id, "signal": sig, "grace_ms": grace_ms})
    out.done(result, f"sent {sig} to {visible(proc_id)} (pid {result['pid']} and its group)")


@procs.command()
@click.argument("proc_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_obj
def rm(out: Output, proc_ids: tuple[str, ...]) -> None:
    """Forget finished processes: their records, kept lines and log files (not a running one).

    Each ID is removed in turn (under an idem key of its own, as every change the client
    sends); the first that fails (`not_found`, `conflict` for a running one) stops here with
    its error, and the ones before it stay removed."""
    removed = []
    with gateway_client(out) as client:
        for proc_id in proc_ids:
            removed.append(client.call("procs.remove", {"id": proc_id}))
            if not out.json:
                click.echo(f"removed {visible(proc_id)}")
    if out.json:
        out.emit({"removed": removed})
