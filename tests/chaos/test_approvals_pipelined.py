"""kill -9 of a real gateway process while many approvals commands are in flight at once (the
approval actor pipelines their persists): every command answered before the kill is durable
after the restart, and nothing is missing or done twice.

A seeded workload drives CALLS tool calls (request -> begin -> finish), WINDOW commands in
flight, and kills the process after a random number of answers, three times; after each
restart it first checks what was answered, then drives every call on from where its answers
say it is (a step with no answer is sent again, as a session would)."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tek_actors import Client, Conflict
from tek_actors.testing import GatewayProcess, write_config

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

CALLS = 150
WINDOW = 48
STEPS = ("request", "begin", "finish")


class Call:
    def __init__(self, n: int) -> None:
        self.key = f"c{n}"
        self.id: str | None = None
        self.done = 0  # steps answered: 0..3

    def next_request(self) -> tuple[str, dict[str, Any]]:
        step = STEPS[self.done]
        if step == "request":
            args = {"argv": ["true"]}
            return "approvals.request", {
                "session": "s1",
                "tool_call": self.key,
                "tool": "shell",
                "arguments": args,
            }
        if step == "begin":
            return "approvals.begin", {"id": self.id, "policy_version": 1}
        return "approvals.finish", {"id": self.id, "outcome": "executed", "result": None}


def drive(client: Client, calls: list[Call], stop_after: int | None) -> None:
    """Run the calls on, WINDOW commands at once; return after `stop_after` answers (the
    rest are still in flight) or when every call is done."""
    flying: dict[Future[Any], Call] = {}
    waiting = [c for c in calls if c.done < len(STEPS)]
    answers = 0

    def send(call: Call) -> None:
        type_name, payload = call.next_request()
        flying[client.submit(type_name, payload, timeout=30)] = call

    while waiting and len(flying) < WINDOW:
        send(waiting.pop())
    while flying:
        future = next(iter(flying))
        call = flying.pop(future)
        try:
            value = future.result(60)
        except Conflict:  # begin or finish that was durable before an earlier kill
            value = None
        answers += 1
        if call.done == 0:
            assert value is not None
            assert call.id in (None, value["id"]), "the same call asked again is one request"
            call.id = value["id"]
        elif call.done == 1 and value is not None:
            assert value["status"] == "running"
        call.done += 1
        if stop_after is not None and answers >= stop_after:
            return
        if call.done < len(STEPS):
            send(call)
        elif waiting:
            send(waiting.pop())


def check_durable(client: Client, calls: list[Call]) -> None:
    """Everything answered before the kill is there."""
    for call in calls:
        if call.done == 0:
            continue
        view = client.call("approvals.get", {"id": call.id})
        want = {1: {"approved", "running", "executed"}, 2: {"running", "executed"}}
        assert view["status"] in want.get(call.done, {"executed"}), (call.key, call.done, view)


def journal_events(home: Path) -> list[tuple[str, dict[str, Any]]]:
    db = sqlite3.connect(next(home.rglob("journal.db")))
    try:
        rows = db.execute("SELECT type, data FROM events WHERE actor = 'approvals' ORDER BY seq")
        return [(t, msgpack.unpackb(d, raw=False)) for t, d in rows]
    finally:
        db.close()


def test_answered_approvals_commands_survive_kill9_while_pipelined(home: Path) -> None:
    rng = random.Random(145)
    write_config(home, {"approvals": {"tools": {"shell": "auto"}}})
    calls = [Call(n) for n in range(CALLS)]
    for _ in range(3):
        gateway = GatewayProcess(home).start()
        client = gateway.client(timeout=30)
        try:
            check_durable(client, calls)
            drive(client, calls, stop_after=rng.randint(30, 250))
        finally:
            gateway.kill9()  # with up to WINDOW commands in flight
            client.close()
    gateway = GatewayProcess(home).start()
    client = gateway.client(timeout=30)
    try:
        check_durable(client, calls)
        drive(client, calls, stop_after=None)
        for call in calls:
            assert client.call("approvals.get", {"id": call.id})["status"] == "executed"
            found = client.call("approvals.list", {"session": "s1", "tool_call": call.key})
            assert [v["id"] for v in found["items"]] == [call.id]
    finally:
        client.close()
        assert gateway.terminate() == 0
    events = journal_events(home)
    requested = Counter(d["tool_call"] for t, d in events if t == "approval.requested")
    assert requested == Counter({c.key: 1 for c in calls})
    for kind in ("approval.running", "approval.executed"):
        assert Counter(d["id"] for t, d in events if t == kind) == Counter(
            {c.id: 1 for c in calls}
        ), kind
