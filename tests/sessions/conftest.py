"""Helpers of the session tests: a config on the fake OpenAI server, waiting for a session's
answer, and waiting until something a gateway actor does on its own thread shows."""

from __future__ import annotations

from typing import Any

from tek_actors import Client
from tek_actors.testing.fake_providers import FakeProvider
from tests.waiting import until

__all__ = ["answer_of", "lab_config", "until", "until_restarting"]


def lab_config(server: FakeProvider, **extra: Any) -> dict[str, Any]:
    """A config whose default model `lab` is `server` (a window of 100,000 tokens)."""
    return {
        "providers": {"lab": {"kind": "openai", "base_url": server.base_url, "api_key": "sk-t"}},
        "models": {"lab": {"provider": "lab", "model": "gpt-test", "context_window": 100_000}},
        "default_model": "lab",
        **extra,
    }


def answer_of(client: Client, session_id: str) -> dict[str, Any]:
    """The next session.message or session.error of the session (deltas skipped)."""
    while True:
        event = client.next_event(20)
        assert event is not None, "no answer came"
        answer = event["event"] in ("session.message", "session.error")
        if answer and event["data"]["session"] == session_id:
            return dict(event["data"])


def until_restarting(client: Client, actor: str) -> None:
    """After test.crash: the supervisor armed `actor`'s restart timer (it says "restarting"
    only after that), so advancing a FakeClock now restarts it."""
    until(lambda: client.status()["actors"][actor]["state"] == "restarting", f"{actor} restarting")
