"""Sessions that keep passivating come back exactly as they were: a seeded random run of sends
(some without waiting), reads, crashes of session actors and restarts of the whole gateway over
more sessions than `limits.sessions_live`, each session's entries checked against a model of
what was said. It covers what rehydration reads (the newest snapshot only, the older one only
if that does not load; the journal after it; the manager's directory replayed in place) and the
kept threads the session actors run on."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Any

from tek_actors import Client, Gateway
from tek_actors.store import Journal
from tek_actors.testing import write_config
from tests.waiting import until

SESSIONS = 8
LIVE = 2
STEPS = 70
ECHO = "(local model) You said: "


def _answered(client: Client, session_id: str, said: list[str]) -> bool:
    """The session holds each message said, in order, and one answer to each, after it (a
    message sent during a turn is journaled before that turn's answer)."""
    entries = client.call("sessions.get", {"id": session_id})["entries"]
    users = [e for e in entries if e["role"] == "user"]
    answers = [e for e in entries if e["role"] == "assistant"]
    position = {e["id"]: i for i, e in enumerate(entries)}
    return (
        [e["text"] for e in users] == said
        and [e["text"] for e in answers] == [ECHO + text for text in said]
        and [a["turn"] for a in answers] == [u["id"] for u in users]
        and all(position[a["turn"]] < position[a["id"]] for a in answers)
        and len(entries) == 2 * len(said)
    )


def _start(home: Path) -> tuple[Gateway, Client]:
    gateway = Gateway(home, embedded=True, test_hooks=True).start()
    return gateway, gateway.client()


def test_sessions_passivated_at_random_keep_every_entry_in_order(home: Path) -> None:
    write_config(home, {"limits": {"sessions_live": LIVE}})
    rng = random.Random(4141)
    gateway, client = _start(home)
    try:
        ids = [client.call("sessions.create", {})["id"] for _ in range(SESSIONS)]
        said: dict[str, list[str]] = {session_id: [] for session_id in ids}
        actions = {"send": 0, "burst": 0, "read": 0, "crash": 0, "restart": 0}
        for step in range(STEPS):
            session_id = rng.choice(ids)
            action = rng.choices(list(actions), weights=[6, 2, 3, 1, 1])[0]
            actions[action] += 1
            if action in ("send", "burst"):
                texts = [f"{step}.{i} {rng.random():.6f}" for i in range(rng.randint(2, 4))]
                texts = texts if action == "burst" else texts[:1]
                acks = [
                    client.submit("sessions.send", {"id": session_id, "text": t}) for t in texts
                ]
                for ack in acks:  # each durable before its answer; answered in the order sent
                    assert ack.result(20)["message_id"].startswith("m-")
                said[session_id] += texts
            elif action == "crash":  # live first (nothing else runs meanwhile to send it away)
                client.call("sessions.get", {"id": session_id})
                client.call("test.crash", {"actor": f"session-{session_id}"})
            elif action == "restart":
                client.close()
                gateway.stop(grace_ms=2000)
                gateway, client = _start(home)
            target = rng.choice(ids)  # whatever happened, it answers everything, once, in order
            until(partial(_answered, client, target, said[target]), f"{target} as modelled")
        for session_id in ids:
            until(partial(_answered, client, session_id, said[session_id]), f"{session_id} at last")
        assert min(actions.values()) >= 2, actions  # the seed takes every way in and out
        listed = client.call("sessions.list")
        assert len(listed["items"]) == SESSIONS
    finally:
        client.close()
        gateway.stop(grace_ms=0)


def test_a_snapshot_list_reads_the_older_snapshot_only_past_the_newest(home: Path) -> None:
    journal = Journal(home / "journal.db", boot_id="t").open()
    try:
        for seq in (3, 7, 9):  # the newest two are kept
            journal.save_snapshot("a", seq, f"state{seq}".encode()).result(10)
        snapshots = journal.load_snapshots("a")
        first: Any = next(iter(snapshots))
        assert first == (9, b"state9")
        assert snapshots._complete is False  # nothing older was read for it
        assert list(snapshots) == [(9, b"state9"), (7, b"state7")]
        assert snapshots == [(9, b"state9"), (7, b"state7")] and len(snapshots) == 2
        assert journal.load_snapshots("none") == [] and not list(journal.load_snapshots("none"))
    finally:
        journal.close()
