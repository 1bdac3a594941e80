"""kill -9 of the real gateway process while clients append: nothing acknowledged is lost,
seq continues without reuse, and a following client resumes with no gap and no duplicate."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client, TekError
from tek_actors.store import Journal
from tek_actors.testing import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_kill9_while_clients_append_loses_nothing_acknowledged(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def append_forever(worker: int) -> None:
        client = gateway.client(client_id=f"writer-{worker}", timeout=60)
        try:
            i = 0
            while not stop.is_set():
                key = f"w{worker}-{i}"
                try:
                    result = client.call("probe.append", {"key": key}, timeout=60)
                except TekError as exc:  # nothing but success is acceptable across a crash
                    errors.append(exc)
                    return
                with lock:
                    acknowledged[key] = result["count"]
                    if len(acknowledged) >= 60:
                        enough.set()
                i += 1
        finally:
            client.close()

    follower = gateway.client(client_id="follower")
    follower.hello(since_seq=0)
    writers = [threading.Thread(target=append_forever, args=(w,)) for w in range(4)]
    try:
        for thread in writers:
            thread.start()
        assert enough.wait(60)
        boot_before = follower.ping()["boot_id"]
        gateway.kill9()  # while the writers are mid-request
        with lock:
            acked_at_kill = dict(acknowledged)
        gateway = GatewayProcess(home).start()
        with lock:
            target = len(acknowledged) + 40
        while True:  # let the writers go on against the new process
            with lock:
                if len(acknowledged) >= target or errors:
                    break
            if not any(t.is_alive() for t in writers):
                break
            follower.ping()  # one round trip between looks; no sleeping
        stop.set()
        for thread in writers:
            thread.join(60)
        assert not errors, errors
        checker = gateway.client()
        try:
            state = checker.call("probe.get")
            status = checker.status()
        finally:
            checker.close()
        assert status["boot_id"] != boot_before
        assert set(acked_at_kill) <= set(state["order"])  # acknowledged before the kill: kept
        assert set(acknowledged) <= set(state["order"])  # and everything acknowledged after
        assert len(state["order"]) == len(set(state["order"]))  # nothing applied twice
        events = _drain(follower, status["head_seq"])
    finally:
        stop.set()
        follower.close()
        gateway.terminate()
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, status["head_seq"] + 1))  # resumed: no gap, no duplicate
    boots = [e["data"]["boot_id"] for e in events if e["event"] == "gateway.started"]
    assert len(boots) == 2 and boots[0] != boots[1]
    appended = [e["data"]["key"] for e in events if e["event"] == "probe.appended"]
    assert appended == state["order"]
    journal = Journal(home / "state" / "journal.db", boot_id="check").open()
    try:  # seq continued across the crash without reuse: one strictly increasing sequence
        stored = journal.read_since(0, limit=100_000)
    finally:
        journal.close()
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))


def _drain(client: Client, head: int) -> list[dict[str, Any]]:
    events = []
    while True:
        event = client.next_event(30)
        assert event is not None, f"the follower stopped at {events[-1]['seq'] if events else 0}"
        if isinstance(event.get("seq"), int):
            events.append(event)
            if event["seq"] >= head:
                return events


def test_a_crash_between_acks_never_reuses_a_seq_or_loses_an_idem_record(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    client = gateway.client()
    try:
        first = client.call("probe.append", {"key": "a"}, idem="idem-a")
        gateway.kill9()
        gateway = GatewayProcess(home).start()
        again = client.call("probe.append", {"key": "a"}, idem="idem-a")  # a resend after crash
        assert again == first
        assert client.call("probe.get")["order"] == ["a"]
        head = client.ping()["head_seq"]
        assert head == 3  # started, appended, started: the resend added nothing
    finally:
        client.close()
        gateway.terminate()
