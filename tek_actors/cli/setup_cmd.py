"""`tek setup`: the first-run walk through provider, default model and approvals, ending with
one real request to the provider it set up (`providers.test`), whose failure it explains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import click

from tek_actors.cli._config_access import ConfigAccess
from tek_actors.cli._output import EXIT_ERROR, Output, fail, gateway_client
from tek_actors.cli._render import visible
from tek_actors.config import setup as steps_module
from tek_actors.config.setup import Checkpoints
from tek_actors.errors import TekError

__all__ = ["setup"]


class ClickAsker:
    """Prompts on the terminal; with `--yes` every question takes its default."""

    def __init__(self, accept_defaults: bool, *, quiet: bool) -> None:
        self.accept_defaults = accept_defaults
        self.quiet = quiet

    def choose(self, question: str, choices: list[str], default: str) -> str:
        if self.accept_defaults:
            return default
        return str(click.prompt(question, type=click.Choice(choices), default=default))

    def text(self, question: str, default: str | None = None, *, secret: bool = False) -> str:
        if self.accept_defaults and default is not None:
            return default
        # Hidden input needs a terminal (getpass opens /dev/tty); piped input is never echoed.
        hide = secret and sys.stdin.isatty()
        return str(click.prompt(question, default=default, hide_input=hide, show_default=True))

    def number(self, question: str, default: int) -> int:
        if self.accept_defaults:
            return default
        return int(click.prompt(question, type=click.IntRange(min=1), default=default))

    def confirm(self, question: str) -> bool:
        return click.confirm(question, default=True)

    def tell(self, text: str) -> None:
        if not self.quiet:
            click.echo(visible(text, lines=True))


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
    asker = ClickAsker(accept_defaults, quiet=out.json)
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
            target = _provider_to_test(access)
            online = access.online
    except TekError as exc:
        fail(out, exc)
    result: dict[str, Any] = {"ran": ran, "pending": []}
    tested = None if target is None else _test(out, asker, target, online=online)
    if tested is not None:
        result["test"] = tested
        if not tested["ok"]:
            provider = tested["provider"]
            out.done(result, f"\nsetup is saved, but provider {provider} does not work yet")
            sys.exit(EXIT_ERROR)
    out.done(result, "\nsetup complete")


def _provider_to_test(access: ConfigAccess) -> dict[str, Any] | None:
    """The default model's provider (its settings, key redacted), unless it is the built-in
    local one: what setup set up, also when it resumed after the provider step."""
    alias = access.get("default_model")["value"]
    model = access.get(f"models.{alias}")["value"]
    provider = access.get(f"providers.{model['provider']}")["value"]
    if provider.get("kind") == "local":
        return None
    return {**provider, "name": model["provider"], "alias": alias, "model": model["model"]}


def _test(
    out: Output, asker: ClickAsker, target: dict[str, Any], *, online: bool
) -> dict[str, Any] | None:
    """`providers.test` of the target, on the running gateway, or on one started for it (if
    the person agrees); the reply, or None when it was not tested."""
    name, variable = target["name"], target.get("api_key_env")

    def say(text: str) -> None:
        if not out.json:
            click.echo(visible(text, lines=True))

    say(f"\n== A test of provider {name} ==")
    if not online:  # `--yes` starts no daemon: a script says so with `tek gateway start`
        if asker.accept_defaults or not asker.confirm(f"Start the gateway now to test {name}?"):
            say(f"not tested: `tek gateway start`, then `tek providers test {name}`")
            return None
        say(f"gateway started (pid {_start_gateway(out)})")
        if variable:
            here = "is set" if os.environ.get(variable) else "is NOT set"
            say(f"it has this shell's environment, where ${variable} {here}")
    elif variable:
        say(
            f"a gateway was running already: whether its environment has ${variable} cannot "
            "be seen from here; this test shows it"
        )
    with gateway_client(out, timeout=140.0) as client:
        result: dict[str, Any] = client.call("providers.test", {"name": name}, timeout=130.0)
    if result["ok"]:
        say(
            f"{name} answered in {result['latency_ms']} ms via {result['model']}: "
            f"{result.get('reply', '')!r}"
        )
    else:
        error = result.get("error") or {}
        say(f"{name} failed: {_what_failed(error, target, started_here=not online)}")
        say(f"fix that, then check again with `tek providers test {name}`")
    return result


def _start_gateway(out: Output) -> int:
    """`tek gateway start` for this home, as its own process (it waits until the gateway
    serves); its pid. Exits with the start's own error if it fails."""
    args = [sys.executable, "-m", "tek_actors", "--home", str(out.home.config_dir), "--json"]
    done = subprocess.run(
        [*args, "gateway", "start"], capture_output=True, text=True, timeout=120, check=False
    )
    try:
        reply = json.loads(done.stdout.splitlines()[-1])
    except (IndexError, ValueError):
        reply = {"error": {"message": done.stderr.strip() or f"exit code {done.returncode}"}}
    if done.returncode != 0 or "error" in reply:
        fail(out, TekError(f"the gateway did not start: {reply['error'].get('message')}"))
    return int(reply["pid"])


def _what_failed(error: dict[str, Any], target: dict[str, Any], *, started_here: bool) -> str:
    """A provider failure in words: what it means here and what to do."""
    kind, message = error.get("kind"), error.get("message") or ""
    variable, url = target.get("api_key_env"), target.get("base_url")
    if kind == "unconfigured" and variable:
        where = (
            f"export {variable}=... in this shell, then `tek gateway stop` and `tek gateway "
            "start` (it takes this shell's environment)"
            if started_here
            else "set it where the gateway is started (the shell of `tek gateway start`, or "
            "the systemd unit's Environment=) and start the gateway again"
        )
        return f"the gateway has no ${variable} in its environment: {where}"
    words = {
        "auth": "the server refused the key (HTTP 401/403): check the key",
        "quota": "the account has no quota or credit left",
        "connection": f"nothing answers at {url}: is the server running, is the URL right?",
        "timeout": f"{url} did not answer in time",
        "model_not_found": f"the server does not serve model {target['model']!r}: set the "
        f"right id with `tek config set models.{target['alias']}.model ID`",
        "rate_limited": "the server asks to wait (rate limited): try again later",
        "overloaded": "the server is overloaded: try again later",
        "server_error": "the server failed (HTTP 5xx): try again later",
    }.get(str(kind), f"the request failed ({kind})")
    return f"{words} ({message})" if message else words
