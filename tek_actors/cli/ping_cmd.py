"""`tek ping`: the gateway's boot id and head seq, and the round trip.

It imports the client (with its codec and zmq) and nothing else of tek: no config models, no
actors, no rich. tests/cli/test_cli_imports.py holds it to that.
"""

from __future__ import annotations

import time

import click

from tek_actors.cli._output import Output, gateway_client

__all__ = ["ping"]


@click.command()
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
