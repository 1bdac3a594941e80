"""`tek completion bash|zsh|fish`: the shell's completion script for `tek`.

It is click's own (what `_TEK_COMPLETE=bash_source tek` prints): the script calls `tek` back
with `_TEK_COMPLETE=<shell>_complete` and the words typed so far, and click answers with the
commands, options and choices that fit. Printed here so that a person need not know click's
variable: `eval "$(tek completion bash)"` in ~/.bashrc, `eval "$(tek completion zsh)"` in
~/.zshrc, `tek completion fish > ~/.config/fish/completions/tek.fish`.
"""

from __future__ import annotations

import click

__all__ = ["completion"]

PROG = "tek"
COMPLETE_VAR = "_TEK_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from click.shell_completion import get_completion_class

    from tek_actors.cli.main import cli

    completer = get_completion_class(shell)
    assert completer is not None  # the three choices are click's own shells
    click.echo(completer(cli, {}, PROG, COMPLETE_VAR).source(), nl=False)
