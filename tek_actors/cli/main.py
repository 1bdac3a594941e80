"""The `tek` command: its global options, and its commands, each imported when it runs.

`tek --version` and `tek --help` import click and this module only; a command imports its own
module and what that needs (the client for `ping`, rich for a table, the gateway for `gateway
run`), so that a small command starts in a few times the interpreter's own start-up
(tools/bench/bench_cli.py measures it; tests/cli/test_cli_imports.py checks what each command
imports). That is also why a few imports below sit inside the functions that use them.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from tek_actors._version import __version__
from tek_actors.errors import TekError

__all__ = ["COMMANDS", "cli", "main"]

# Every command: the module that defines it (as an attribute of the same name), and the first
# sentence of its docstring, which `tek --help` shows without importing the module
# (tests/cli/test_cli_imports.py checks that the two agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "approvals": (
        "tek_actors.cli.approvals_cmds",
        "Tool calls waiting for a person, and what was decided.",
    ),
    "chat": (
        "tek_actors.cli.chat_cmds",
        "Talk with a model; its tools work in the current folder.",
    ),
    "completion": (
        "tek_actors.cli.completion_cmd",
        "Print the shell completion script for bash, zsh or fish.",
    ),
    "config": (
        "tek_actors.cli.config_cmds",
        "Read and change the configuration (config.json), validated and applied live.",
    ),
    "doctor": (
        "tek_actors.cli.doctor_cmd",
        "Check the home, the config, the providers and the systemd unit; say what to fix.",
    ),
    "events": (
        "tek_actors.cli.events_cmd",
        "Print the gateway's events (durable ones in seq order, across gateway restarts).",
    ),
    "gateway": ("tek_actors.cli.gateway_cmds", "Run and manage the gateway process."),
    "mcp": (
        "tek_actors.cli.mcp_cmds",
        "MCP tool servers: their state and tools; add, remove, restart.",
    ),
    "ping": (
        "tek_actors.cli.ping_cmd",
        "Check that the gateway answers; print its boot id and head seq.",
    ),
    "procs": (
        "tek_actors.cli.procs_cmds",
        "Processes the gateway runs and watches (they outlive gateway restarts).",
    ),
    "providers": (
        "tek_actors.cli.providers_cmds",
        "Model providers: what is configured, their health, a live test.",
    ),
    "sessions": ("tek_actors.cli.chat_cmds", "Stored conversations."),
    "status": (
        "tek_actors.cli.status_cmd",
        "Everything about the gateway on one screen: actors, config, providers, sessions, log.",
    ),
    "setup": (
        "tek_actors.cli.setup_cmd",
        "Set up tek step by step; an interrupted setup resumes where it stopped.",
    ),
}


class LazyGroup(click.Group):
    """The commands of COMMANDS, each imported the first time it is asked for; and the one
    place where an error no command handled (a TekError, or an OSError of this process) becomes
    a one-line message and exit code (`_output.fail`) instead of a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `--json` is the group's option, and a person puts it where they think of it: `tek
        # ping --json` as well as `tek --json ping`. Only before a `--`: after it every word is
        # the command's (`tek procs run -- jq --json`).
        end = args.index("--") if "--" in args else len(args)
        if "--json" in args[:end]:
            args = ["--json", *(a for a in args[:end] if a != "--json"), *args[end:]]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            # A name that is no command loads them all, so that click's "did you mean" (which
            # looks at the loaded ones) sees every command: only a typo pays for that.
            for name in [cmd_name] if cmd_name in COMMANDS else COMMANDS:
                if name not in self.commands:
                    module = importlib.import_module(COMMANDS[name][0])
                    self.add_command(getattr(module, name), name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own, but a command not loaded yet is described from COMMANDS.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TekError as exc:  # e.g. a gateway's error answer that the command let through
            from tek_actors.cli._output import fail

            fail(ctx.obj, exc)
        except BrokenPipeError:
            raise  # `tek events | head`: click ends that quietly
        except OSError as exc:  # the disk or the system refused something to `tek` itself
            from tek_actors.cli._output import fail_os

            fail_os(ctx.obj, exc)


@click.group(cls=LazyGroup)
@click.option(
    "--home",
    envvar="TEK_HOME",
    type=click.Path(file_okay=False),
    help="Folder for config, state and run files (default: platform folders).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Machine-readable output, one JSON per line (anywhere before a `--`).",
)
@click.option("--endpoint", envvar="TEK_ENDPOINT", help="Gateway endpoint (default: from home).")
@click.version_option(__version__, prog_name="tek")
@click.pass_context
def cli(ctx: click.Context, home: str | None, as_json: bool, endpoint: str | None) -> None:
    """tek: the gateway of a self-hosted AI agent."""
    from tek_actors.cli._output import Output
    from tek_actors.home import TekHome

    # No --token: a secret on a command line is visible to every user (ps). A tcp gateway's
    # credentials come from the home (keys/, token) or TEK_TOKEN.
    ctx.obj = Output(TekHome.resolve(home), as_json, endpoint)


def main() -> None:
    """The `tek` console script, and `python -m tek_actors`."""
    cli()
