"""`tek config get|set|unset|edit|validate|backups|restore|schema`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tek_actors.cli._config_access import ConfigAccess, describe_change
from tek_actors.cli._output import EXIT_ERROR, Output, fail
from tek_actors.cli._render import visible
from tek_actors.config.document import load, unknown_fields
from tek_actors.config.model import Config
from tek_actors.config.store import ConfigStore, encode
from tek_actors.errors import InvalidValue, TekError

__all__ = ["config"]


@click.group()
def config() -> None:
    """Read and change the configuration (config.json), validated and applied live."""


@contextlib.contextmanager
def _access(out: Output) -> Iterator[ConfigAccess]:
    try:
        with ConfigAccess(out.home, out.endpoint) as access:
            yield access
    except TekError as exc:
        _refuse(out, exc)


def parse_value(text: str, *, as_string: bool) -> Any:
    """A command-line value: JSON if it parses as JSON (and --string is not given), else the
    text itself. So `8192` is a number, `true` a boolean, `'{"a": 1}'` an object, `ask` text."""
    if as_string:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@config.command()
@click.argument("path", required=False)
@click.pass_obj
def get(out: Output, path: str | None) -> None:
    """Print the configuration in force, or the value at PATH (secrets redacted)."""
    with _access(out) as access:
        reply = access.get(path)
    if out.json:
        out.emit(reply)
        return
    if reply.get("problem"):
        click.echo(visible(f"warning: {reply['problem']} (in force: {reply['source']})"), err=True)
    value = reply["value"]
    # json.dumps escapes every control character itself (and all that is not ASCII).
    click.echo(visible(value) if isinstance(value, str) else json.dumps(value, indent=2))


# A JSON number with a minus: a value, never an option (`tek config set limits.x -5`).
_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class _ValueCommand(click.Command):
    """A command whose negative numbers are values: the arguments go behind a `--` (click's
    "no options after this"), the options before it. For commands whose options are flags."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args and any(_NEGATIVE_NUMBER.fullmatch(a) for a in args):

            def is_option(arg: str) -> bool:
                return arg.startswith("-") and not _NEGATIVE_NUMBER.fullmatch(arg)

            options = [a for a in args if is_option(a)]
            args = [*options, "--", *(a for a in args if not is_option(a))]
        return super().parse_args(ctx, args)


@config.command(name="set", cls=_ValueCommand)
@click.argument("path")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True, help="Take VALUE as text, never as JSON.")
@click.pass_obj
def set_(out: Output, path: str, value: str, as_string: bool) -> None:
    """Set PATH (dotted, e.g. models.fast.context_window) to VALUE (JSON or plain text)."""
    with _access(out) as access:
        reply = access.change("set", path=path, value=parse_value(value, as_string=as_string))
    out.done(reply, f"{path}: {describe_change(reply)}")


@config.command()
@click.argument("path")
@click.pass_obj
def unset(out: Output, path: str) -> None:
    """Remove PATH from config.json, so that it takes its default."""
    with _access(out) as access:
        reply = access.change("unset", path=path)
    out.done(reply, f"{path}: {describe_change(reply)}")


@config.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def validate(out: Output, file: Path | None) -> None:
    """Check FILE (default: the home's config.json) without changing anything."""
    path = file or out.home.config_path
    store = ConfigStore(path)
    try:
        raw = store.read_raw(path)
        if raw is None:
            raise InvalidValue(f"{path} does not exist", details={"path": "", "expected": "a file"})
        doc, _, steps = load(raw)
    except TekError as exc:
        _refuse(out, exc, f" in {path}")
    unknown = unknown_fields(doc)
    if not out.json:  # kept, as a newer tek's fields must be, and ignored by this one
        for field in unknown:
            note = f"warning: {field['path']}: {field['message']}; kept, and ignored by this tek"
            click.echo(visible(note), err=True)
    note = f" (will be migrated: {', '.join(steps)})" if steps else ""
    result = {"valid": True, "migrations": steps, "unknown": [f["path"] for f in unknown]}
    out.done(result, f"{path} is valid{note}")


@config.command()
@click.pass_obj
def edit(out: Output) -> None:
    """Open config.json in $EDITOR; the result is validated before it is applied."""
    home = out.home
    home.ensure()
    with _access(out) as access:
        version = access.version()
        original = access.store.read_raw() if home.config_path.exists() else None
        text = encode(original if isinstance(original, dict) else access.loaded().raw).decode()
        # The copy holds the secrets, so it lives next to config.json, 0600, and goes after.
        fd, name = tempfile.mkstemp(prefix=".config.edit-", suffix=".json", dir=home.config_dir)
        os.close(fd)
        draft = Path(name)
        try:
            draft.write_text(text)
            while True:
                click.edit(filename=str(draft))
                edited = draft.read_text()
                if edited == text:
                    out.done({"changed": False}, "no change")
                    return
                try:
                    document = json.loads(edited)
                    if not isinstance(document, dict):
                        raise InvalidValue(
                            "config.json must hold a JSON object", details={"path": ""}
                        )
                    reply = access.change("replace", document=document, base_version=version)
                except json.JSONDecodeError as exc:
                    click.echo(f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}")
                except InvalidValue as exc:
                    _print_problems(exc, "refused")
                else:
                    out.done(reply, describe_change(reply))
                    return
                if out.json or not click.confirm("Edit again?", default=True, err=True):
                    fail(out, InvalidValue("the edit was not applied; nothing changed"))
        finally:
            draft.unlink(missing_ok=True)


@config.command()
@click.pass_obj
def backups(out: Output) -> None:
    """List the backups of config.json, newest first."""
    listed = [b.describe() for b in ConfigStore(out.home.config_path).backups()]
    if out.json:
        out.emit({"backups": listed})
        return
    kinds = {"rejected": "  (a refused edit)", "newer": "  (from a newer tek)"}
    for backup in listed:
        click.echo(f"{visible(backup['name'])}{kinds.get(backup['kind'], '')}")


@config.command()
@click.argument("name")
@click.pass_obj
def restore(out: Output, name: str) -> None:
    """Make backup NAME the configuration (the current file is backed up first)."""
    with _access(out) as access:
        reply = access.restore(name)
    out.done(reply, f"restored {name}: {describe_change(reply)}")


@config.command()
@click.pass_obj
def schema(out: Output) -> None:
    """Print the JSON schema of config.json."""
    out.emit(Config.model_json_schema())


def _refuse(out: Output, exc: TekError, where: str = "") -> None:
    """Say why and exit 1: a refusal naming several paths says each, one per line (`--json`
    has them all in `details.errors`)."""
    if out.json or len((exc.details or {}).get("errors", [])) < 2:
        fail(out, exc)
    _print_problems(exc, f"{click.style('error', fg='red')}: {exc.code}", where)
    sys.exit(EXIT_ERROR)


def _print_problems(exc: TekError, lead: str, where: str = "") -> None:
    errors = (exc.details or {}).get("errors", [])
    if len(errors) < 2:
        click.echo(f"{lead}: {visible(exc.message)}", err=True)
        return
    click.echo(f"{lead}: {len(errors)} problems{visible(where)}:", err=True)
    for err in errors:
        line = f"  {err['path'] or '(the file)'}: {err['message']}"
        if str(err["expected"]) not in line:  # an unknown name's message lists the names
            line += f" (expected {err['expected']})"
        click.echo(visible(line), err=True)
