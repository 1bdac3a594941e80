"""What a `tek` command imports, and how it reports an error: each command runs in a fresh
interpreter (as the console script runs it), which then says which modules it loaded.

A small command must start fast (issue 14, goal 7; tools/bench/bench_cli.py measures it): these
tests hold each to the modules it needs, which is what makes it fast, and never assert a time.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tek_actors.cli._output import Output
from tek_actors.cli.main import COMMANDS, LazyGroup, cli
from tek_actors.errors import TekError, Unavailable
from tek_actors.home import TekHome
from tek_actors.testing.process import GatewayProcess

# Runs `tek ARGS...` as the console script does, then writes the names of every loaded module.
PROBE = """
import json, sys
out, sys.argv = sys.argv[1], ["tek", *sys.argv[2:]]
try:
    from tek_actors.cli import main
    main()
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
"""
BASELINE = "import json, sys; json.dump(sorted(sys.modules), open(sys.argv[1], 'w'))"

# What `--version` and `--help` may load of tek: the version, the exception tree, the group.
TEK_AT_START = {"tek_actors", "tek_actors._version", "tek_actors.errors"}
TEK_CLI = {"tek_actors.cli", "tek_actors.cli.main"}
# Nothing of the gateway side, and no other command, for `tek ping`.
NOT_FOR_PING = (
    "tek_actors.gateway",
    "tek_actors.runtime",
    "tek_actors.config",
    "tek_actors.providers",
    "tek_actors.sessions",
    "tek_actors.approvals",
    "tek_actors.procs",
    "tek_actors.actors",
    "tek_actors.testing",
    "tek_actors.transport.frontend",
    *(module for name, (module, _) in COMMANDS.items() if name != "ping"),
)
THIRD_PARTY_NOT_FOR_PING = {"pykka", "httpx", "rich", "psutil", "prompt_toolkit", "pexpect"}


def _loaded(tmp: Path, code: str, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp / "modules.json"
    out.unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, "-c", code, str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )
    return run, set(json.loads(out.read_text()))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tekimp", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def startup(scratch: Path) -> set[str]:
    """What the interpreter itself loads (site, the editable install's finder, ...)."""
    return _loaded(scratch, BASELINE)[1]


@pytest.fixture(scope="module")
def gateway_home(scratch: Path) -> Iterator[Path]:
    """A real gateway process on a home of its own, for every test of this module."""
    home = scratch / "home"
    with GatewayProcess(home):
        yield home


def tek_loads(scratch: Path, startup: set[str], *args: str) -> tuple[str, set[str]]:
    """`tek ARGS...` in a fresh interpreter: its stdout, and the modules it loaded beyond the
    interpreter's own start-up. The command must succeed."""
    run, modules = _loaded(scratch, PROBE, *args)
    assert run.returncode == 0, run.stderr
    return run.stdout, modules - startup


def third_party(modules: set[str]) -> set[str]:
    tops = {name.split(".")[0] for name in modules} - set(sys.stdlib_module_names)
    return {top for top in tops if top != "tek_actors" and not top.startswith("_")}


def ours(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] == "tek_actors"}


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_click_and_the_command_table_only(
    scratch: Path, startup: set[str], args: list[str]
) -> None:
    stdout, modules = tek_loads(scratch, startup, *args)
    assert stdout.strip()
    assert ours(modules) <= TEK_AT_START | TEK_CLI
    assert third_party(modules) == {"click"}


def test_help_lists_every_command_with_the_short_help_its_module_gives() -> None:
    for name, (module, short) in COMMANDS.items():
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command) and command.name == name
        for limit in range(10, 120):  # the table says what the command would, at any width
            described = click.Command(name, help=short).get_short_help_str(limit)
            assert described == command.get_short_help_str(limit), (name, limit)
    # ... and no top-level command of the CLI's modules is missing from the table.
    modules = {importlib.import_module(module) for module, _ in COMMANDS.values()}
    found = {obj for m in modules for obj in vars(m).values() if isinstance(obj, click.Command)}
    nested = {
        sub for group in found if isinstance(group, click.Group) for sub in group.commands.values()
    }
    assert {command.name for command in found - nested} == set(COMMANDS)
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


def test_ping_loads_the_client_and_nothing_of_the_gateway(
    scratch: Path, startup: set[str], gateway_home: Path
) -> None:
    stdout, modules = tek_loads(scratch, startup, "--home", str(gateway_home), "ping")
    assert stdout.startswith("pong from boot ")
    assert "tek_actors.client.client" in modules
    assert {"zmq", "msgpack"} <= third_party(modules)
    assert [m for m in ours(modules) if m.startswith(NOT_FOR_PING)] == []
    assert third_party(modules) & THIRD_PARTY_NOT_FOR_PING == set()


def test_ping_loads_no_pydantic_loguru_asyncio_or_store(
    scratch: Path, startup: set[str], gateway_home: Path
) -> None:
    _, modules = tek_loads(scratch, startup, "--home", str(gateway_home), "ping")
    heavy = {"pydantic", "loguru", "asyncio", "tek_actors.store", "tek_actors.wire.envelope"}
    assert heavy & modules == set()


# -- the library's records stay off until someone turns them on, without importing loguru -----

RECORDS = """
import sys
{first}
from loguru import logger
seen = []
logger.remove()
logger.add(lambda message: seen.append(message.record["name"]), format="{{message}}")
ours = {{"__name__": "tek_actors.probe", "log": logger}}
exec("log.warning('ours')", ours)
exec("log.warning('host')", {{"__name__": "host", "log": logger}})
logger.enable("tek_actors")
exec("log.warning('ours')", ours)
from tek_actors import _logger  # the client's: loguru's own methods, called from our module
exec("log.warning('ours, lazily')", {{"__name__": "tek_actors.probe", "log": _logger}})
print(",".join(seen))
"""


@pytest.mark.parametrize("first", ["import tek_actors", "import loguru; import tek_actors"])
def test_the_library_disables_its_records_whichever_is_imported_first(first: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", RECORDS.format(first=first)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "host,tek_actors.probe,tek_actors.probe"


def test_importing_the_package_does_not_import_loguru(scratch: Path, startup: set[str]) -> None:
    _, modules = _loaded(
        scratch, BASELINE.replace("import json, sys", "import json, sys, tek_actors")
    )
    assert "loguru" not in modules - startup


# -- an error is a line and an exit code, never a traceback --------------------------------------


def tek(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_gateway_error_answer_is_one_line_and_exit_1(gateway_home: Path) -> None:
    missing = tek(gateway_home, "sessions", "show", "no-such-session")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: not_found: ")
    assert "Traceback" not in missing.stderr
    refused = tek(gateway_home, "config", "set", "limits.tool_rounds", "many")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: invalid_value: ")
    assert "limits.tool_rounds" in refused.stderr.splitlines()[0]
    assert "  expected: an integer" in refused.stderr.splitlines()
    assert "Traceback" not in refused.stderr
    as_json = tek(gateway_home, "--json", "sessions", "show", "no-such-session")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "not_found"


def test_an_error_of_the_system_is_one_line_and_exit_1(scratch: Path) -> None:
    not_a_folder = scratch / "a-file"
    not_a_folder.write_text("")
    result = tek(not_a_folder / "home", "setup", "--yes")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ENOTDIR: ")
    assert "Traceback" not in result.stderr


class DiskGone(TekError):
    """A kind of error this CLI has never heard of: the base class decides how it is shown."""

    code = "disk_gone"


class DiskFull(Unavailable):
    """Like the gateway's storage error: a kind of `unavailable`, so exit code 3."""


@pytest.mark.parametrize(("kind", "exit_code"), [(DiskGone, 1), (DiskFull, 3)])
@pytest.mark.parametrize("as_json", [False, True])
def test_any_tek_error_that_reaches_the_group_is_a_line_and_an_exit_code(
    kind: type[TekError], exit_code: int, as_json: bool
) -> None:
    group = LazyGroup("tek")
    details = {"path": "/srv/tek", "retryable": False, "errors": [1, 2]}

    @group.command()
    def save() -> None:
        raise kind("the disk went away", details=details)

    out = Output(TekHome.resolve("/srv/tek"), as_json, None)
    result = CliRunner().invoke(group, ["save"], obj=out)
    assert result.exit_code == exit_code
    assert isinstance(result.exception, SystemExit)  # `fail`'s exit, not the error itself
    if as_json:
        error = json.loads(result.stdout)["error"]
        assert error == {"code": kind.code, "message": "the disk went away", "details": details}
    else:
        assert result.stderr.splitlines() == [
            f"error: {kind.code}: the disk went away",
            "  path: /srv/tek",
            "  retryable: false",
        ]
