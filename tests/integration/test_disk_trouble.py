"""Disk trouble against the real gateway process: a read-only home, a full disk under the journal.

The home is laid out as real disks: `state/` and `run/` are small tmpfs mounts, and the home
itself is bound onto itself so that it can be made read-only while the gateway runs (a mount
with a file open for writing cannot be; config.json is never kept open). The process's own
output goes to a file outside them. Needs root and mount rights: skipped with the reason where
the machine does not allow it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from pydantic import BaseModel

from tek_actors import Client, Gateway
from tek_actors.errors import StorageUnavailable
from tek_actors.runtime import Backoff, ChildSpec, Intensity, PersistentActor
from tek_actors.store import NewEvent
from tek_actors.testing import GatewayProcess
from tests.store.test_disk_trouble import bind_mount, fill, remount, tmpfs
from tests.waiting import events_until, until

pytestmark = [pytest.mark.slow]

PATH = "limits.proc_output_lines"  # an int any value of which is valid


@contextlib.contextmanager
def _gateway(home: Path, out: Path) -> Iterator[tuple[GatewayProcess, Client]]:
    """The real gateway process on `home` and a client of it; stopped (exit 0 checked)."""
    gateway = GatewayProcess(home)
    gateway.log_path = out  # not in the home: an open file would keep it from going read-only
    gateway.start(timeout=60)
    client = gateway.client(timeout=30)
    try:
        yield gateway, client
    finally:
        client.close()
        try:
            code = gateway.terminate(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill9()
            raise
        assert code == 0, gateway.log_tail()


def _config_changes(journal: Path) -> list[Any]:
    """The value at PATH of every `config.changed` in the journal, in order (the gateway is
    stopped: this reads the file itself)."""
    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT data FROM events WHERE type = 'config.changed' ORDER BY seq")
        changes = [msgpack.unpackb(data, raw=False)["changes"] or {} for (data,) in rows]
    return [c[PATH] for c in changes if PATH in c]


def _texts(client: Client, session_id: str) -> list[str]:
    entries = client.call("sessions.get", {"id": session_id, "since": 0})["entries"]
    return [e["text"] for e in entries if e["role"] == "user"]


def _conversation(client: Client, text: str) -> str:
    """A session with one message answered (its turn over: nothing left to write)."""
    session_id: str = client.call("sessions.create", {"title": "disk"})["id"]
    client.call("sessions.send", {"id": session_id, "text": text})

    def answered() -> bool:
        got = client.call("sessions.get", {"id": session_id, "since": 0})
        return got["turn"] is None and got["count"] >= 2

    until(answered, "the local model's reply")
    return session_id


def _assert_served(client: Client, *, value: int, session_id: str, texts: list[str]) -> None:
    """The config actor never crashed, and what is durable is read as before."""
    status = client.call("gateway.status")
    assert status["actors"]["config"]["restarts"] == 0, status["actors"]["config"]
    assert status["actors"]["config"]["state"] == "running"
    assert client.call("config.get", {"path": PATH})["value"] == value
    assert _texts(client, session_id) == texts


def test_a_read_only_home_refuses_config_set_clearly_and_serves_reads(
    home: Path, tmp_path: Path
) -> None:
    with bind_mount(home), tmpfs(home / "state", size="64m"), tmpfs(home / "run", size="4m"):
        with _gateway(home, tmp_path / "gateway.out") as (_, client):
            version = client.call("config.set", {"path": PATH, "value": 1001})["version"]
            session_id = _conversation(client, "before")
            written = (home / "config.json").read_bytes()
            remount(home, read_only=True)
            with pytest.raises(StorageUnavailable) as caught:
                client.call("config.set", {"path": PATH, "value": 1002})
            refused = caught.value
            assert refused.code == "unavailable"
            assert refused.details == {"reason": "read_only", "path": str(home), "retryable": False}
            assert refused.message.startswith(f"{home} is read-only")
            assert "config.json was not written, so nothing changed" in refused.message
            _assert_served(client, value=1001, session_id=session_id, texts=["before"])
            assert client.call("config.get")["version"] == version
            assert (home / "config.json").read_bytes() == written
            remount(home, read_only=False)  # a person fixed it: no restart needed
            assert (
                client.call("config.set", {"path": PATH, "value": 1003})["version"] == version + 1
            )
        assert _config_changes(home / "state" / "journal.db") == [1001, 1003]


def _set_until_refused(client: Client, first: int) -> tuple[list[int], StorageUnavailable]:
    """config.set first, first + 1, ... until the disk refuses one; (the values acknowledged,
    the refusal). A few may fit in what the journal's files had already allocated."""
    acknowledged: list[int] = []

    def attempt() -> StorageUnavailable | None:
        value = first + len(acknowledged)
        try:
            client.call("config.set", {"path": PATH, "value": value})
        except StorageUnavailable as refused:
            return refused
        acknowledged.append(value)
        return None

    return acknowledged, until(attempt, "a config.set refused by the full disk")


def test_a_full_disk_refuses_changes_clearly_and_loses_nothing_acknowledged(
    home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gateway.out"
    with tmpfs(home / "state", size="16m") as state:
        with _gateway(home, out) as (_, client):
            client.call("config.set", {"path": PATH, "value": 2000})
            session_id = _conversation(client, "before")
            filler = fill(state)
            acknowledged, refused = _set_until_refused(client, 2001)
            assert refused.code == "unavailable" and refused.details["reason"] == "disk_full"
            assert refused.details["path"] == str(state) and refused.details["retryable"] is False
            assert refused.message.startswith(f"the disk holding {state} is full")
            in_force = [2000, *acknowledged]
            if refused.details.get("changed"):  # recorded, but not that it was applied
                in_force.append(2001 + len(acknowledged))
            else:
                assert "nothing changed" in refused.message
            # Once one write found no room, none fits until there is: the WAL only grows.
            with pytest.raises(StorageUnavailable) as caught:
                client.call("sessions.send", {"id": session_id, "text": "refused"})
            assert caught.value.details["reason"] == "disk_full"
            _assert_served(client, value=in_force[-1], session_id=session_id, texts=["before"])
            on_disk = (home / "config.json").read_text()
            assert f'"proc_output_lines": {in_force[-1]}' in on_disk  # the file was put back
            assert "full" in str(client.call("gateway.status")["actors"]["journal"]["last_error"])
            filler.unlink()  # a person made room: changes are taken again, no restart needed
            client.call("config.set", {"path": PATH, "value": 3000})
            in_force.append(3000)
        with _gateway(home, out) as (_, client):  # a restart: nothing acknowledged is lost
            _assert_served(client, value=3000, session_id=session_id, texts=["before"])
        changes = _config_changes(state / "journal.db")
        assert changes == in_force, "the journal holds exactly the changes in force"


def _start_fails(home: Path, out: Path) -> tuple[int, str]:
    """Start the gateway process on `home`, expecting it to give up: (exit code, its output)."""
    gateway = GatewayProcess(home)
    gateway.log_path = out
    gateway.spawn()
    try:
        code = gateway.wait(timeout=60)
    finally:
        gateway.kill9()
    return code, gateway.log_tail(20_000)


def test_a_gateway_cannot_start_on_a_full_disk_and_says_so(home: Path, tmp_path: Path) -> None:
    with tmpfs(home / "state", size="8m") as state:
        with _gateway(home, tmp_path / "first.out") as (_, client):
            client.call("config.set", {"path": PATH, "value": 4000})
        fill(state)
        code, log = _start_fails(home, tmp_path / "second.out")
        assert code == 3, log  # a start that cannot complete (docs/operations.md)
        assert f"the disk holding {state} is full: the journal cannot be written" in log, log
        assert "Traceback" not in log, log


def test_a_gateway_cannot_start_on_a_read_only_state_folder_and_says_so(
    home: Path, tmp_path: Path
) -> None:
    # The journal holds its files open for writing while it runs, so this mount cannot be
    # made read-only under a running gateway (EBUSY): a read-only state/ is met at a start.
    with bind_mount(home / "state") as state:
        with _gateway(home, tmp_path / "first.out") as (_, client):
            client.call("config.set", {"path": PATH, "value": 4000})
        remount(state, read_only=True)
        code, log = _start_fails(home, tmp_path / "second.out")
        assert code == 3, log
        assert f"{state} is read-only (or not writable by the gateway)" in log, log
        assert "Traceback" not in log, log


class _Nothing(BaseModel):
    pass


class _WritesAtStart(PersistentActor[_Nothing]):
    """A child whose start journals an event: on a full disk every start crashes on it."""

    state_model = _Nothing

    def apply(self, state: _Nothing, event: NewEvent) -> _Nothing:
        return state

    def on_begin(self) -> None:
        super().on_begin()
        self.persist(NewEvent("test.started", {}))


def test_crashes_on_a_full_disk_restart_the_child_but_never_escalate(home: Path) -> None:
    spec = ChildSpec(
        "writer",
        _WritesAtStart,
        intensity=Intensity(max_restarts=1, window_s=600.0),  # a second real crash escalates
        backoff=Backoff(initial_s=0.01, max_s=0.05, jitter=0.0),
    )
    with tmpfs(home / "state", size="8m") as state:
        gateway = Gateway(home, embedded=True, test_hooks=True, extra_children=[spec]).start()
        try:
            filler = fill(state)
            assert gateway.inject_fault("writer", 0)  # one crash: it restarts into the full disk

            def writer() -> dict[str, Any]:
                return dict(gateway.status()["actors"]["writer"])

            until(lambda: writer()["restarts"] >= 4, "the writer restarting again and again")
            # The tree did not give up (the disk is not the child's fault): it shows degraded
            # only while the journal refuses, and says why.
            assert not gateway._degraded
            assert gateway.state == "degraded"
            assert gateway.status()["actors"]["journal"]["state"] == "disk_full"
            assert "is full" in str(writer()["last_error"])
            client = gateway.client()
            try:
                client.hello(topics=["test.*"])
                filler.unlink()
                events_until(client, lambda e: e["event"] == "test.started")  # it started
                # (its event goes out as it is committed, a moment before its start returns)
                until(
                    lambda: writer()["state"] == "running" and gateway.state == "running",
                    "the writer running again and the gateway no longer degraded",
                )
            finally:
                client.close()
        finally:
            assert gateway.stop(grace_ms=0) == 0
