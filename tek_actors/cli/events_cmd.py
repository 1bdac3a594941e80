"""`tek events`: the gateway's events, durable ones in seq order, across gateway restarts.

A script (`--json`, or stdout a pipe or a file) gets JSON lines, one event a line, exactly as the
gateway sent it; a terminal gets `seq date time name data`, data as JSON with its control
characters visible.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tek_actors.cli._output import Output, gateway_client
from tek_actors.cli._render import visible, when

__all__ = ["events"]


@click.command()
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
    as_json = out.json or not sys.stdout.isatty()
    with gateway_client(out) as client:
        hello = client.hello(since_seq=since, topics=list(topics) or None)
        head = hello["head_seq"]
        if not follow and (since is None or since >= head):
            return
        try:
            for event in client.events(timeout=None if follow else idle):
                if event.get("event") == "gateway.heartbeat":
                    continue
                _print_event(out, event, as_json=as_json)
                if not follow and isinstance(event.get("seq"), int) and event["seq"] >= head:
                    return
        except KeyboardInterrupt:
            return


def _print_event(out: Output, event: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        out.emit(event)
        return
    seq = event.get("seq")
    label = f"{seq:>6}" if isinstance(seq, int) else "     ~"
    data = json.dumps(event.get("data"), ensure_ascii=False, default=str)
    click.echo(f"{label} {when(event.get('ts'))} {visible(event.get('event'))} {visible(data)}")
