"""Sessions as a person keeps them (issue 15, item 6): a title from the first line, `tek chat
--session ID` taking one up where it was, `tek sessions rename` and `tek sessions delete`, and
`tek approvals approve --remember` saying exactly which commands run unasked (item 9); all
through the real `tek` against a real gateway process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tek_actors import Client
from tek_actors.cli._chat_commands import TITLE_MAX
from tests.cli.test_cli import tek
from tests.waiting import until

pytestmark = pytest.mark.slow

LONG = "please summarise the three design documents in this folder and then " + "x" * 40


@pytest.fixture
def gateway(home: Path) -> Iterator[Path]:
    assert tek(home, "gateway", "start").returncode == 0
    try:
        yield home
    finally:
        tek(home, "gateway", "stop")


def chat_through_pipes(home: Path, *args: str, lines: list[str]) -> tuple[str, str]:
    """`tek chat ARGS` fed `lines` then /quit on a pipe: its stdout and stderr."""
    run = subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "chat", *args],
        input="".join(line + "\n" for line in [*lines, "/quit"]),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )
    assert run.returncode == 0, run.stderr
    return run.stdout, run.stderr


def listed(home: Path) -> list[dict[str, Any]]:
    return list(json.loads(tek(home, "--json", "sessions", "list").stdout)["items"])


def test_a_session_is_titled_by_its_first_line_and_taken_up_where_it_was(gateway: Path) -> None:
    out, _ = chat_through_pipes(gateway, lines=[LONG, "second line"])
    assert "\x1b" not in out  # no colour into a pipe
    (item,) = listed(gateway)
    title = item["title"]
    assert LONG.startswith(title.removesuffix("…")) and len(title) <= TITLE_MAX
    assert title.endswith("…")  # cut, and says so; the second line did not rename it

    out, _ = chat_through_pipes(gateway, "--session", item["id"], lines=["third line"])
    first = out.splitlines()[0]
    assert first.startswith(f"session {item['id']} {title!r}: 4 entries")
    head = out.split("you> ")[0]  # shown before the first prompt: where the talk was
    assert "user> second line" in head and "local> (local model) You said: second line" in head
    assert "You said: third line" in out
    assert [i["title"] for i in listed(gateway)] == [title]  # titled already: kept

    missing = tek(gateway, "chat", "--session", "s-nope")
    assert missing.returncode == 1 and "error: not_found: " in missing.stderr


def test_rename_and_delete_a_session(gateway: Path) -> None:
    chat_through_pipes(gateway, lines=["hello"])
    (item,) = listed(gateway)
    renamed = tek(gateway, "sessions", "rename", item["id"], "[red]plans\x1b[2J")
    assert renamed.returncode == 0, renamed.stderr
    assert renamed.stdout.strip() == f"{item['id']} is now titled '[red]plans\\x1b[2J'"
    assert listed(gateway)[0]["title"] == "[red]plans\x1b[2J"  # stored as given, shown as data

    unknown = tek(gateway, "sessions", "delete", "s-nope")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: not_found: there is no session 's-nope'")
    unknown_rename = tek(gateway, "sessions", "rename", "s-nope", "x")
    assert unknown_rename.returncode == 1 and "not_found" in unknown_rename.stderr

    # On a terminal it asks first; "no" deletes nothing.
    asked = pexpect.spawn(
        sys.executable,
        ["-m", "tek_actors", "--home", str(gateway), "sessions", "delete", item["id"]],
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
        encoding="utf-8",
        timeout=30,
    )
    try:
        asked.expect_exact(f"delete session {item['id']} '[red]plans\\x1b[2J' from ")
        asked.expect_exact("[y/N]")
        asked.sendline("n")
        asked.expect_exact("nothing deleted")
        asked.expect(pexpect.EOF)
    finally:
        asked.close(force=True)
    assert [i["id"] for i in listed(gateway)] == [item["id"]]

    # Not on a terminal (a script), or with --yes: deleted without a question.
    deleted = tek(gateway, "sessions", "delete", item["id"])
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"{item['id']} deleted"
    assert listed(gateway) == []
    gone = tek(gateway, "sessions", "show", item["id"])
    assert gone.returncode == 1 and "not_found" in gone.stderr


def _pending(client: Client, session: str, argv: list[str]) -> dict[str, Any]:
    """Send a `shell` call of `argv` on `session`; its approval once it exists."""
    client.call(
        "sessions.send", {"id": session, "text": "tool: shell " + json.dumps({"argv": argv})}
    )

    def found() -> dict[str, Any] | None:
        items = client.call("approvals.list", {"session": session})["items"]
        return next((i for i in items if i["arguments"].get("argv") == argv), None)

    return until(found, f"the approval of {argv}")


def test_remember_says_which_commands_run_without_asking(gateway: Path, tmp_path: Path) -> None:
    with Client(home=gateway, timeout=30) as client:
        session = client.call("sessions.create", {"cwd": str(tmp_path)})["id"]
        first = _pending(client, session, ["echo", "alw"])
        assert first["status"] == "pending"
        decided = tek(gateway, "approvals", "approve", first["id"], "--remember")
        assert decided.returncode == 0, decided.stderr
        status, said = decided.stdout.strip().split(" and remembered: ", 1)
        # the call may be under way already when the rule is in place
        assert status in {f"{first['id']}: {s}" for s in ("approved", "running", "executed")}
        assert said == (
            "shell runs `echo alw` and `echo alw …` (these words first, then any) "
            "without asking from now on"
        )
        # What it says is what the gateway does: the words first, then any; not a text prefix.
        longer = _pending(client, session, ["echo", "alw", "more"])
        assert (
            until(
                lambda: client.call("approvals.get", {"id": longer["id"]})["decided_by"],
                "the policy's decision",
            )
            == "policy"
        )
        other = _pending(client, session, ["echo", "alw2"])
        assert client.call("approvals.get", {"id": other["id"]})["status"] == "pending"
