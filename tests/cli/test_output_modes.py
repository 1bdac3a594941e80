"""How `tek` prints for a script and for a person (issue 15, 4): `--json` anywhere before a `--`,
plain tables when stdout is not a terminal, and every time with its date."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tek_actors.testing import GatewayProcess
from tests.cli.test_cli import tek
from tests.cli.test_render import _column, _on_terminal

pytestmark = pytest.mark.slow

DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
BOX = "━┃│┏└"


def test_json_anywhere_before_a_double_dash(home: Path, tmp_path: Path) -> None:
    with GatewayProcess(home):
        for args in (["--json", "ping"], ["ping", "--json"], ["ping", "--timeout", "9", "--json"]):
            result = tek(home, *args)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["boot_id"]
        listed = tek(home, "procs", "list", "--json")
        assert json.loads(listed.stdout)["items"] == []
        # After `--` it is the command's word: it runs with it, and the output is for a person.
        started = tek(home, "procs", "run", "--cwd", str(tmp_path), "--", "echo", "--json")
        assert started.returncode == 0 and started.stdout.startswith("started p-"), started.stdout
        items = json.loads(tek(home, "--json", "procs", "list").stdout)["items"]
        assert [item["argv"] for item in items] == [["echo", "--json"]]


def test_piped_tables_are_plain_and_times_have_dates(home: Path, tmp_path: Path) -> None:
    with GatewayProcess(home) as gateway:
        assert tek(home, "procs", "run", "--cwd", str(tmp_path), "--", "true").returncode == 0
        with gateway.client() as client:
            client.call("sessions.create", {"title": "first"})
        for args, column, after in (
            (["procs", "list"], "started", "command"),
            (["sessions", "list"], "created", "live"),
        ):
            result = tek(home, *args)
            assert result.returncode == 0, result.stderr
            assert not set(BOX) & set(result.stdout), result.stdout
            times = _column(result.stdout, column, after)
            assert times and all(DATE_TIME.match(t) for t in times), times
        status = tek(home, "gateway", "status")
        assert status.returncode == 0 and not set(BOX) & set(status.stdout)
        assert re.search(r"^sessions +running +0", status.stdout, re.M)  # plain columns
        terminal = _on_terminal(home, "events", "--since", "0")
        assert re.search(r"\s1 \d{4}-\d{2}-\d{2} \d\d:\d\d:\d\d gateway\.started \{", terminal)
        assert "┃" in _on_terminal(home, "gateway", "status")  # a terminal keeps rich's table
