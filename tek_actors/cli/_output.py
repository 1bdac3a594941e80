"""How `tek` talks to a person (rich, on a terminal) or a script (`--json`)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from tek_actors.client import Client
from tek_actors.errors import TekError, Unavailable
from tek_actors.home import TekHome

__all__ = ["EXIT_ERROR", "EXIT_UNAVAILABLE", "Output", "fail", "gateway_client"]

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3


@dataclass
class Output:
    home: TekHome
    json: bool
    endpoint: str | None
    token: str | None

    @property
    def console(self) -> Console:
        # Piped output gets wide lines (a table is not folded at 80 columns for a script).
        width = None if sys.stdout.isatty() else 200
        return Console(stderr=False, highlight=False, soft_wrap=True, width=width)

    def emit(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, default=str) + "\n")
        sys.stdout.flush()

    def done(self, value: Any, message: str) -> None:
        if self.json:
            self.emit(value)
        else:
            self.console.print(message)

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        if self.json or not sys.stdout.isatty():
            yield
            return
        with self.console.status(text):
            yield

    def status_table(self, status: dict[str, Any]) -> None:
        console = self.console
        state = status.get("state", "?")
        colour = {"running": "green", "degraded": "yellow"}.get(state, "red")
        console.print(
            f"gateway [bold {colour}]{state}[/]  pid {status.get('pid')}  "
            f"boot {status.get('boot_id')}  head_seq {status.get('head_seq')}  "
            f"clients {status.get('clients')}"
        )
        console.print(f"endpoint {status.get('endpoint')}")
        table = Table("actor", "state", "restarts", "last error")
        for name, actor in sorted(status.get("actors", {}).items()):
            table.add_row(
                name,
                str(actor.get("state")),
                str(actor.get("restarts")),
                str(actor.get("last_error") or ""),
            )
        console.print(table)


def fail(out: Output, error: TekError) -> NoReturn:
    code = EXIT_UNAVAILABLE if isinstance(error, Unavailable) else EXIT_ERROR
    if out.json:
        sys.stdout.write(
            json.dumps(
                {"error": {"code": error.code, "message": error.message, "details": error.details}}
            )
            + "\n"
        )
    else:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[red]error[/] ({error.code}): {error.message}"
        )
    sys.exit(code)


@contextlib.contextmanager
def gateway_client(out: Output, *, timeout: float = 10.0) -> Iterator[Client]:
    """A Client for the home's gateway; a clear error and exit 3 when none runs."""
    try:
        client = Client(out.endpoint, home=out.home, token=out.token, timeout=timeout)
    except TekError as exc:
        fail(out, exc)
    try:
        yield client
    except TekError as exc:
        fail(out, exc)
    finally:
        client.close()
