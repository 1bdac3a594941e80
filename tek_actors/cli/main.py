"""The `tek` command: global options and the small commands (`ping`, `events`)."""

from __future__ import annotations

import time
from typing import Any

import click

from tek_actors._version import __version__
from tek_actors.cli._output import Output, fail, gateway_client
from tek_actors.cli.approvals_cmds import approvals
from tek_actors.cli.chat_cmds import chat, sessions
from tek_actors.cli.config_cmds import config
from tek_actors.cli.gateway_cmds import gateway
from tek_actors.cli.procs_cmds import procs
from tek_actors.cli.providers_cmds import providers
from tek_actors.cli.setup_cmd import setup
from tek_actors.errors import TekError
from tek_actors.home import TekHome

__all__ = ["cli", "main"]


@click.group()
@click.option(
    "--home",
    envvar="TEK_HOME",
    type=click.Path(file_okay=False),
    help="Folder for config, state and run files (default: platform folders).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, one JSON per line.")
@click.option("--endpoint", envvar="TEK_ENDPOINT", help="Gateway endpoint (default: from home).")
@click.option("--token", envvar="TEK_TOKEN", help="Token for tcp:// endpoints.")
@click.version_option(__version__, prog_name="tek")
@click.pass_context
def cli(
    ctx: click.Context, home: str | None, as_json: bool, endpoint: str | None, token: str | None
) -> None:
    """tek: the gateway of a self-hosted AI agent."""
    ctx.obj = Output(TekHome.resolve(home), as_json, endpoint, token)


cli.add_command(gateway)
cli.add_command(config)
cli.add_command(setup)
cli.add_command(providers)
cli.add_command(procs)
cli.add_command(approvals)
cli.add_command(chat)
cli.add_command(sessions)


@cli.command()
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the answer.")
@click.pass_obj
def ping(out: Output, timeout: float) -> None:
    """Check that the gateway answers; print its boot id and head seq."""
    with gateway_client(out, timeout=timeout) as client:
        started = time.perf_counter()
        result = client.ping(timeout=timeout)
        result["rtt_ms"] = round((time.perf_counter() - started) * 1000, 3)
    out.done(
        result,
        f"pong from boot {result['boot_id']}: head_seq {result['head_seq']}, {result['rtt_ms']} ms",
    )


@cli.command()
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=None,
    help="Replay durable events after this seq (default: only new ones).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep following live events.")
@click.option("--topic", "topics", multiple=True, help="Glob on event names; repeatable.")
@click.option(
    "--idle",
    default=2.0,
    show_default=True,
    help="Without --follow: stop after this many seconds with no event.",
)
@click.pass_obj
def events(
    out: Output, since: int | None, follow: bool, topics: tuple[str, ...], idle: float
) -> None:
    """Print the gateway's events (durable ones in seq order, across gateway restarts)."""
    with gateway_client(out) as client:
        hello = client.hello(since_seq=since, topics=list(topics) or None)
        head = hello["head_seq"]
        if not follow and (since is None or since >= head):
            return
        try:
            for event in client.events(timeout=None if follow else idle):
                if event.get("event") == "gateway.heartbeat":
                    continue
                _print_event(out, event)
                if not follow and isinstance(event.get("seq"), int) and event["seq"] >= head:
                    return
        except KeyboardInterrupt:
            return


def _print_event(out: Output, event: dict[str, Any]) -> None:
    if out.json:
        out.emit(event)
        return
    seq = event.get("seq")
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("ts") or 0))
    label = f"{seq:>6}" if isinstance(seq, int) else "     ~"
    click.echo(f"{label} {stamp} {event.get('event')} {event.get('data')}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except TekError as exc:  # anything a command did not convert itself
        fail(Output(TekHome.resolve(None), False, None, None), exc)
