"""`tek setup`: the first-run walk through provider, default model and approvals."""

from __future__ import annotations

import click

from tek_actors.cli._config_access import ConfigAccess
from tek_actors.cli._output import Output, fail
from tek_actors.config import setup as steps_module
from tek_actors.config.setup import Checkpoints
from tek_actors.errors import TekError

__all__ = ["setup"]


class ClickAsker:
    """Prompts on the terminal; with `--yes` every question takes its default."""

    def __init__(self, accept_defaults: bool) -> None:
        self.accept_defaults = accept_defaults

    def choose(self, question: str, choices: list[str], default: str) -> str:
        if self.accept_defaults:
            return default
        return str(click.prompt(question, type=click.Choice(choices), default=default))

    def text(self, question: str, default: str | None = None, *, secret: bool = False) -> str:
        if self.accept_defaults and default is not None:
            return default
        return str(click.prompt(question, default=default, hide_input=secret, show_default=True))

    def number(self, question: str, default: int) -> int:
        if self.accept_defaults:
            return default
        return int(click.prompt(question, type=click.IntRange(min=1), default=default))


@click.command()
@click.option("--reset", is_flag=True, help="Forget which steps are done and start over.")
@click.option("--yes", "accept_defaults", is_flag=True, help="Take every default; ask nothing.")
@click.pass_obj
def setup(out: Output, reset: bool, accept_defaults: bool) -> None:
    """Set up tek step by step; an interrupted setup resumes where it stopped."""
    out.home.ensure()
    checkpoints = Checkpoints(out.home.state_dir / "setup.json")
    if reset:
        checkpoints.reset()
    pending = checkpoints.pending(steps_module.STEPS)
    if not pending:
        out.done(
            {"ran": [], "pending": []}, "setup is complete (use --reset to go through it again)"
        )
        return
    asker = ClickAsker(accept_defaults)
    ran = []
    try:
        with ConfigAccess(out.home, out.endpoint) as access:
            for step in pending:
                if not out.json:
                    click.echo(f"\n== {step.title} ==")
                summary = step.run(asker, access)
                checkpoints.mark(step, summary)
                ran.append(step.id)
                if not out.json:
                    click.echo(f"done: {summary}")
    except TekError as exc:
        fail(out, exc)
    out.done({"ran": ran, "pending": []}, "\nsetup complete")
