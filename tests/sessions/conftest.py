"""Waiting for a session's answer."""

from __future__ import annotations

from typing import Any

from tek_actors import Client


def answer_of(client: Client, session_id: str) -> dict[str, Any]:
    """The next session.message or session.error of the session (deltas skipped)."""
    while True:
        event = client.next_event(20)
        assert event is not None, "no answer came"
        answer = event["event"] in ("session.message", "session.error")
        if answer and event["data"]["session"] == session_id:
            return dict(event["data"])
