"""Sessions past the live bound: a passivated session comes back exactly as it was, whatever
happened in between; it writes a snapshot only when something changed; a session in a turn goes
only once its turn is over; and requests that reach a session while it passivates are all
answered, in order, once each."""

from __future__ import annotations

import random
import sqlite3
from functools import partial
from typing import Any

from tek_actors import Client, Gateway
from tek_actors.testing.fake_providers import FakeProvider
from tests.conftest import Start
from tests.sessions.conftest import answer_of, lab_config, until

ONE_LIVE = {"limits": {"sessions_live": 1}}


class Passivations:
    """The `session.passivated` events of a gateway, remembered whatever was waited for."""

    def __init__(self, gateway: Gateway) -> None:
        self.client = gateway.client()
        self.client.hello(topics=["session.passivated"])
        self.seen: list[str] = []

    def wait(self, session_id: str) -> None:
        while session_id not in self.seen:
            event = self.client.next_event(20)
            assert event is not None, f"session {session_id} did not passivate"
            self.seen.append(event["data"]["session"])
        self.seen.remove(session_id)

    def close(self) -> None:
        self.client.close()


def _snapshots(gateway: Gateway, session_id: str) -> list[tuple[int, float]]:
    """(seq, written at) of the session's kept snapshots, read from the journal's file."""
    assert gateway._journal is not None
    path = gateway._journal.path
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT seq, ts FROM snapshots WHERE actor = ? ORDER BY seq",
            (f"session-{session_id}",),
        ).fetchall()
    return [(int(seq), float(ts)) for seq, ts in rows]


def _view(client: Client, session_id: str) -> dict[str, Any]:
    return dict(client.call("sessions.get", {"id": session_id}))


def _live(client: Client, session_id: str) -> bool:
    items = client.call("sessions.list")["items"]
    return bool(next(s for s in items if s["id"] == session_id)["live"])


def _gone(client: Client, session_id: str) -> bool:
    """The manager has let the session go: a request for it now waits for it to stop, and
    is served by its next incarnation."""
    return not _live(client, session_id)


def test_a_passivated_session_writes_a_snapshot_only_when_something_changed(
    gateway_with: Start,
) -> None:
    gateway, client = gateway_with(ONE_LIVE)
    passivations = Passivations(gateway)
    try:
        client.hello(topics=["session.message"])
        first, other = (client.call("sessions.create", {})["id"] for _ in range(2))
        client.call("sessions.send", {"id": first, "text": "hello"})
        answer_of(client, first)
        _view(client, other)  # past the bound: the first goes, and snapshots its turn
        passivations.wait(first)
        written = _snapshots(gateway, first)
        assert len(written) == 1

        _view(client, first)  # back, read, and gone again with nothing new
        passivations.wait(other)
        _view(client, other)
        passivations.wait(first)
        assert _snapshots(gateway, first) == written

        client.call("sessions.send", {"id": first, "text": "again"})  # something new
        answer_of(client, first)
        _view(client, other)
        passivations.wait(first)
        newer = _snapshots(gateway, first)
        assert newer[0] == written[0] and newer[1][0] > written[0][0]
    finally:
        passivations.close()


def test_a_session_in_a_turn_passivates_only_once_its_turn_is_over(gateway_with: Start) -> None:
    with FakeProvider("openai") as server:
        server.hold()
        server.script({"text": "the answer"})
        gateway, client = gateway_with(lab_config(server, **ONE_LIVE))
        passivations = Passivations(gateway)
        try:
            client.hello(topics=["session.message"])
            busy, other = (client.call("sessions.create", {})["id"] for _ in range(2))
            client.call("sessions.send", {"id": busy, "text": "take your time"})
            server.wait_for_held(1)  # its turn is under way
            _view(client, other)  # past the bound: the busy one is asked to go
            during = _view(client, busy)  # handled after the request to go (FIFO)
            assert during["turn"] is not None and _live(client, busy)
            server.release(1)
            assert answer_of(client, busy)["text"] == "the answer"
            passivations.wait(busy)  # it went once the turn was over
            entries = _view(client, busy)["entries"]
            assert [(e["role"], e["text"]) for e in entries] == [
                ("user", "take your time"),
                ("assistant", "the answer"),
            ]
        finally:
            passivations.close()


def test_a_session_activated_from_its_snapshot_and_journal_is_the_live_one(
    gateway_with: Start,
) -> None:
    """A seeded random run of turns, reads, passivations and crashes (a crashed session leaves
    no snapshot of its last changes: it comes back from an older one and the journal's tail)."""
    rng = random.Random(1414)
    _, client = gateway_with(ONE_LIVE)
    client.hello(topics=["session.message"])
    ids = [client.call("sessions.create", {})["id"] for _ in range(3)]
    said: dict[str, list[str]] = {session_id: [] for session_id in ids}
    actions = {"turn": 0, "passivate": 0, "crash": 0}
    for step in range(40):
        session_id = rng.choice(ids)
        action = rng.choice(["turn", "turn", "passivate", "crash"])
        actions[action] += 1
        if action == "turn":
            text = f"step {step}: {rng.random():.6f}"
            client.call("sessions.send", {"id": session_id, "text": text})
            assert answer_of(client, session_id)["text"] == f"(local model) You said: {text}"
            said[session_id].append(text)
        before = _view(client, session_id)  # live now
        if action == "passivate":
            _view(client, next(s for s in ids if s != session_id))  # past the bound: it goes
        elif action == "crash":
            client.call("test.crash", {"actor": f"session-{session_id}"})
        if action != "turn":
            until(partial(_gone, client, session_id), f"{session_id} went ({action})")
        after = _view(client, session_id)  # from its snapshot and the journal, if it went
        assert after == before
        users = [e["text"] for e in after["entries"] if e["role"] == "user"]
        assert users == said[session_id]
    assert min(actions.values()) >= 5  # the seed tries each way in and out several times


def test_requests_that_meet_a_passivation_are_all_answered_in_order_once(
    gateway_with: Start,
) -> None:
    """Messages sent without waiting, right as the session is sent away: whether each reaches
    it before it passivated, after it said so, or while it stops, each is journaled once and
    answered once, in the order sent."""
    _, client = gateway_with(ONE_LIVE)
    client.hello(topics=["session.message"])
    target, other = (client.call("sessions.create", {})["id"] for _ in range(2))
    sent: list[str] = []
    for attempt in range(5):
        _view(client, target)  # live
        away = client.submit("sessions.get", {"id": other})  # the target is asked to go
        texts = [f"attempt {attempt} message {i}" for i in range(3)]
        acks = [client.submit("sessions.send", {"id": target, "text": t}) for t in texts]
        away.result(20)
        for ack in acks:
            assert ack.result(20)["message_id"].startswith("m-")
        sent += texts
        answered = [answer_of(client, target)["text"] for _ in texts]
        assert answered == [f"(local model) You said: {t}" for t in texts]
    entries = _view(client, target)["entries"]
    assert [e["text"] for e in entries if e["role"] == "user"] == sent
    assert len([e for e in entries if e["role"] == "assistant"]) == len(sent)
