"""`tek mcp list|add|remove|restart`: the MCP tool servers (docs/mcp.md).

`add` and `remove` are config changes (`config.set` / `config.unset` of `mcp.servers.NAME`),
so they are validated, written and applied like any other, and `add` is answered once the
server runs and its tools are listed, or with why it could not start (nothing changed then).
"""

from __future__ import annotations

import os

import click

from tek_actors.cli._output import Output, gateway_client
from tek_actors.cli._render import argv_line, print_table, visible

__all__ = ["mcp"]

_START_TIMEOUT_S = 90.0  # a server's start (its interpreter, its imports) and its tool list


@click.group()
def mcp() -> None:
    """MCP tool servers: their state and tools; add, remove, restart."""


@mcp.command(name="list")
@click.pass_obj
def list_(out: Output) -> None:
    """Each server: its state, pid, restarts, last error and the tools it offers."""
    with gateway_client(out) as client:
        result = client.call("mcp.list")
    if out.json:
        out.emit(result)
        return
    servers = result["servers"]
    if not servers:
        click.echo("no MCP servers (add one: tek mcp add NAME -- COMMAND...)")
        return
    print_table(
        ["server", "state", "pid", "restarts", "tools", "last error"],
        [
            [
                name,
                s["state"],
                s["pid"] or "",
                s["restarts"],
                ", ".join(t["as"] for t in s["tools"]),
                s["last_error"] or "",
            ]
            for name, s in sorted(servers.items())
        ],
    )
    for name, s in sorted(servers.items()):
        if s["state"] == "failed" and s.get("stderr"):
            click.echo(f"{visible(name)}: the last lines of its stderr:")
            for line in s["stderr"]:
                click.echo("  " + visible(line))


@mcp.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="For the server; NAME alone takes the value from this shell (keep secrets off argv).",
)
@click.option("--cwd", default=None, help="Its working folder (absolute).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Per call, in seconds.")
@click.pass_obj
def add(
    out: Output,
    name: str,
    command: tuple[str, ...],
    env: tuple[str, ...],
    cwd: str | None,
    timeout_s: float | None,
) -> None:
    """Add (or replace) the stdio server NAME that runs COMMAND: `tek mcp add fs -- npx -y
    @modelcontextprotocol/server-filesystem /tmp`. Answered once it runs."""
    value: dict[str, object] = {"command": list(command)}
    if env:
        value["env"] = dict(_env_value(item) for item in env)
    if cwd is not None:
        value["cwd"] = cwd
    if timeout_s is not None:
        value["timeout_s"] = timeout_s
    with gateway_client(out, timeout=_START_TIMEOUT_S) as client:
        result = client.call(
            "config.set", {"path": f"mcp.servers.{name}", "value": value}, timeout=_START_TIMEOUT_S
        )
        view = client.call("mcp.list")["servers"].get(name, {})
    tools = ", ".join(t["as"] for t in view.get("tools", [])) or "none"
    out.done(
        {**result, "server": view},
        f"{name}: {view.get('state', '?')}, runs {argv_line(command)}; its tools: {tools}",
    )


def _env_value(item: str) -> tuple[str, str]:
    """`NAME=VALUE`, or `NAME` alone: its value in this shell (a secret typed on a command
    line is visible to every user in `ps`; one in the environment is not)."""
    name, sep, value = item.partition("=")
    if sep:
        return name, value
    if name not in os.environ:
        raise click.BadParameter(f"{name} is not set in this shell", param_hint="--env")
    return name, os.environ[name]


@mcp.command()
@click.argument("name")
@click.pass_obj
def remove(out: Output, name: str) -> None:
    """Stop the server NAME and remove it from the configuration."""
    with gateway_client(out) as client:
        if name not in client.call("mcp.list")["servers"]:
            from tek_actors.errors import NotFound

            raise NotFound(f"there is no MCP server {name!r} (tek mcp list)")
        result = client.call("config.unset", {"path": f"mcp.servers.{name}"})
    out.done(result, f"{name}: removed")


@mcp.command()
@click.argument("name")
@click.pass_obj
def restart(out: Output, name: str) -> None:
    """Start the server NAME again (a failed one too); answered once it runs."""
    with gateway_client(out, timeout=_START_TIMEOUT_S) as client:
        view = client.call("mcp.restart", {"name": name}, timeout=_START_TIMEOUT_S)
    out.done(view, f"{name}: {view['state']}, pid {view['pid']}, restarts {view['restarts']}")
