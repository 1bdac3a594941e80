"""How `tek` talks to a person (plain lines; rich tables on a terminal) or a script (`--json`).

What a view shows of a user's, a model's or a tool's text goes through `_render` (escaped,
never markup). rich and the client are imported where they are used, not here: every command
imports this module, and `tek ping` prints one plain line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._render import print_table, visible
from tek_actors.errors import TekError, Unavailable

if TYPE_CHECKING:
    from rich.console import Console

    from tek_actors.client import Client
    from tek_actors.home import TekHome

__all__ = [
    "EXIT_ERROR",
    "EXIT_UNAVAILABLE",
    "Output",
    "check_alive",
    "fail",
    "fail_os",
    "gateway_client",
]

# What README.md and docs/operations.md promise: 0 ok, 1 an error (from the gateway or here),
# 2 bad arguments (click's own), 3 no gateway running or it is unavailable.
EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3


@dataclass
class Output:
    home: TekHome
    json: bool
    endpoint: str | None

    @property
    def console(self) -> Console:
        from rich.console import Console

        # Piped output gets wide lines (a table is not folded at 80 columns for a script).
        width = None if sys.stdout.isatty() else 200
        return Console(stderr=False, highlight=False, emoji=False, soft_wrap=True, width=width)

    def emit(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, default=str) + "\n")
        sys.stdout.flush()

    def done(self, value: Any, message: str) -> None:
        """`value` as JSON for a script, else `message` (never read as markup; its control
        characters made visible: it may quote a name or a value a person gave)."""
        if self.json:
            self.emit(value)
        else:
            click.echo(visible(message, lines=True))

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        if self.json or not sys.stdout.isatty():
            yield
            return
        with self.console.status(text):
            yield

    def status_table(self, status: dict[str, Any]) -> None:
        state = visible(status.get("state", "?"))
        colour = {"running": "green", "degraded": "yellow"}.get(state, "red")
        click.echo(
            f"gateway {click.style(state, fg=colour, bold=True)}  pid {status.get('pid')}  "
            f"boot {visible(status.get('boot_id'))}  head_seq {status.get('head_seq')}  "
            f"clients {status.get('clients')}"
        )
        click.echo(f"endpoint {visible(status.get('endpoint'))}")
        print_table(
            ["actor", "state", "restarts", "last error"],
            [
                [name, actor.get("state"), actor.get("restarts"), actor.get("last_error") or ""]
                for name, actor in sorted(status.get("actors", {}).items())
            ],
        )


def fail(out: Output | None, error: TekError) -> NoReturn:
    """Say what went wrong and exit (1, or 3 when the gateway is unavailable, a refusing disk
    included): one JSON line on stdout with `--json`, else `error: <code>: <message>` on stderr,
    then a line for each detail that is a plain value the message does not already say. Never a
    traceback: an error the gateway answered is not a bug of `tek`."""
    code = EXIT_UNAVAILABLE if isinstance(error, Unavailable) else EXIT_ERROR
    _say(out, error.code, error.message, error.details, code)


def fail_os(out: Output | None, error: OSError) -> NoReturn:
    """As `fail`, for what the system refused `tek` itself (a read-only or full disk, a missing
    permission): the code is the errno's name (`EROFS`), and the exit code 1."""
    name = errno.errorcode.get(error.errno or 0, "OSError")
    details = {"path": str(error.filename)} if error.filename is not None else {}
    _say(out, name, error.strerror or str(error), details, EXIT_ERROR)


def _say(
    out: Output | None, code: str, message: str, details: dict[str, Any], exit_code: int
) -> NoReturn:
    if out is not None and out.json:
        error = {"code": code, "message": message, "details": details}
        sys.stdout.write(json.dumps({"error": error}, default=str) + "\n")
    else:  # a message may quote what a person typed (`there is no session '[/x]'`)
        click.echo(
            f"{click.style('error', fg='red')}: {code}: {visible(message, lines=True)}", err=True
        )
        for key, value in details.items():
            if isinstance(value, str):
                if value not in message:  # `path`, `id`: the message names them already
                    click.echo(f"  {visible(key)}: {visible(value)}", err=True)
            elif isinstance(value, (int, float, bool)):  # as in JSON: `retryable: false`
                click.echo(f"  {visible(key)}: {json.dumps(value)}", err=True)
            # a list or a map (every field's error) is the command's to show, if it wants
    sys.exit(exit_code)


def check_alive(out: Output) -> None:
    """Exit 3 (`unavailable`) if the home's connection file names a gateway that is dead. An
    explicit `--endpoint` is not checked: its gateway may live on another machine."""
    if out.endpoint is not None:
        return
    pid = stale_gateway(out.home.read_connection())
    if pid is not None:
        fail(
            out,
            Unavailable(
                f"the gateway is not running (stale connection file from pid {pid}); "
                "start it with `tek gateway start`",
                details={"pid": pid, "path": str(out.home.connection_file)},
                retry_after_ms=1000,
            ),
        )


@contextlib.contextmanager
def gateway_client(out: Output, *, timeout: float = 10.0) -> Iterator[Client]:
    """A Client for the home's gateway; a clear error and exit 3 when none runs, at once also
    when a killed gateway left its connection file behind (no request waits for its timeout)."""
    from tek_actors.client import Client

    check_alive(out)
    try:
        client = Client(out.endpoint, home=out.home, timeout=timeout)
    except TekError as exc:
        fail(out, exc)
    try:
        yield client
    except TekError as exc:
        fail(out, exc)
    finally:
        client.close()
