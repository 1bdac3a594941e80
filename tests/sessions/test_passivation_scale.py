"""Thousands of stored sessions cost no threads: past `limits.sessions_live` the least recently
used idle session is passivated, and a passivated session answers as if it never slept."""

from __future__ import annotations

import threading

import pytest

from tek_actors.sessions.manager import SPARE_THREADS
from tests.conftest import Start
from tests.sessions.conftest import answer_of

pytestmark = pytest.mark.slow

SESSIONS = 2_000
LIVE = 50


def test_two_thousand_sessions_with_fifty_live_keep_the_threads_bounded(
    gateway_with: Start,
) -> None:
    gateway, client = gateway_with({"limits": {"sessions_live": LIVE}})
    client.hello(topics=["session.message"])
    watcher = gateway.client()
    watcher.hello(topics=["session.passivated"])
    baseline = threading.active_count()
    most = baseline
    ids = []
    passivated = 0
    try:
        for i in range(SESSIONS):
            session_id = client.call("sessions.create", {"title": f"s{i}"})["id"]
            client.call("sessions.send", {"id": session_id, "text": f"hello {i}"})
            assert answer_of(client, session_id)["text"] == f"(local model) You said: hello {i}"
            ids.append(session_id)
            # Each session past the bound has the least recently used one passivate, on that
            # session's thread: count the threads once that is done, not while a loaded
            # machine has yet to get round to it.
            while passivated < len(ids) - LIVE:
                assert watcher.next_event(20) is not None, "a session past the bound stayed live"
                passivated += 1
            most = max(most, threading.active_count())
    finally:
        watcher.close()
    listed = client.call("sessions.list")
    assert len(listed["items"]) == SESSIONS
    # One thread per live session at most, plus the few that wait to be told to passivate and
    # the kept ones that wait for the next activation (sessions/_threads.py).
    assert listed["live"] <= LIVE + 2
    bound = LIVE + 5 + SPARE_THREADS
    assert most - baseline <= bound, f"{most - baseline} threads for {LIVE} live sessions"

    first = ids[0]  # passivated long ago
    assert not next(s for s in listed["items"] if s["id"] == first)["live"]
    client.call("sessions.send", {"id": first, "text": "still there?"})
    assert answer_of(client, first)["text"] == "(local model) You said: still there?"
    entries = client.call("sessions.get", {"id": first})["entries"]
    assert [(e["role"], e["text"]) for e in entries] == [
        ("user", "hello 0"),
        ("assistant", "(local model) You said: hello 0"),
        ("user", "still there?"),
        ("assistant", "(local model) You said: still there?"),
    ]
