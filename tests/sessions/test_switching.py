"""Explicit model switching: plan, switch (carry_over or fresh), undo, and a context that does
not fit: never compressed silently."""

from __future__ import annotations

from typing import Any

import pytest

from tek_actors import Client, Conflict, InvalidRequest, InvalidValue
from tek_actors.testing.fake_providers import FakeProvider
from tests.conftest import Start
from tests.sessions.conftest import answer_of, lab_config

MODELS = {
    "big": {"provider": "local", "model": "local", "context_window": 32768},
    # the definitions of the built-in tools take about 229 tokens of it
    "tiny": {"provider": "local", "model": "local", "context_window": 512},
}
LINE = "x" * 300  # about 79 tokens by the bytes/4 estimate; with its echoed answer, ~172


def _talk(client: Client, session_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(
            client.call("sessions.send", {"id": session_id, "text": f"{i} {LINE}"})["message_id"]
        )
        answer_of(client, session_id)
    return ids


def test_plan_switch_undo(gateway_with: Start) -> None:
    _, client = gateway_with({"models": MODELS})
    session = client.call("sessions.create", {"model": "big"})["id"]
    client.hello(topics=["session.*"])
    sent = _talk(client, session, 3)
    plan = client.call("sessions.plan_switch", {"id": session, "model": "tiny"})
    assert plan["target_window"] == 512 and not plan["fits"] and plan["tokens"] > 512
    carry, fresh = plan["options"]
    assert carry["mode"] == "carry_over" and carry["drop"] == sent[:2] and carry["fits"]
    assert carry["tokens_after"] <= 512 < plan["tokens"]
    assert fresh["drop"] == sent and fresh["fits"] and fresh["tokens_after"] < 512 // 2
    with pytest.raises(InvalidRequest):
        client.call("sessions.switch", {"id": session, "model": "tiny"})  # a mode is required
    switched = client.call(
        "sessions.switch", {"id": session, "model": "tiny", "mode": "carry_over"}
    )
    assert switched["model"] == "tiny" and switched["dropped"] == sent[:2]
    event = _next(client, "session.switched")
    assert event["dropped"] == sent[:2] and event["from"] == "big" and event["to"] == "tiny"
    client.call("sessions.send", {"id": session, "text": "still here?"})
    assert answer_of(client, session)["role"] == "assistant"  # it fits now
    undone = client.call("sessions.undo_switch", {"id": session})
    assert undone["model"] == "big" and undone["dropped"] == [] and undone["switches"] == 0
    with pytest.raises(Conflict):
        client.call("sessions.undo_switch", {"id": session})
    with pytest.raises(InvalidValue):
        client.call("sessions.plan_switch", {"id": session, "model": "ghost"})


def test_a_context_that_does_not_fit_is_an_error_with_the_options(gateway_with: Start) -> None:
    _, client = gateway_with({"models": MODELS})
    session = client.call("sessions.create", {"model": "tiny"})["id"]
    client.hello(topics=["session.*"])
    client.call("sessions.send", {"id": session, "text": "y" * 2000})
    error = answer_of(client, session)
    assert error["role"] == "error" and error["error"]["code"] == "invalid_value"
    details = error["error"]["details"]
    assert details["kind"] == "context_overflow" and details["target_window"] == 512
    assert [o["mode"] for o in details["options"]] == ["carry_over", "fresh"]
    fresh = client.call("sessions.switch", {"id": session, "model": "tiny", "mode": "fresh"})
    assert len(fresh["dropped"]) == 1
    client.call("sessions.send", {"id": session, "text": "short"})
    assert answer_of(client, session)["text"] == "(local model) You said: short"


def test_auto_trim_says_exactly_what_it_dropped(gateway_with: Start) -> None:
    _, client = gateway_with({"models": MODELS, "limits": {"auto_trim": True}})
    session = client.call("sessions.create", {"model": "tiny"})["id"]
    client.hello(topics=["session.*"])
    sent = _talk(client, session, 2)
    client.call("sessions.send", {"id": session, "text": f"2 {LINE}"})
    trimmed = _next(client, "session.trimmed")
    assert trimmed["dropped"] == sent[:1] and trimmed["reason"] == "auto_trim"  # oldest first
    assert trimmed["tokens_after"] <= 512  # and no more than needed
    assert answer_of(client, session)["role"] == "assistant"


def _next(client: Client, name: str) -> dict[str, Any]:
    while True:
        event = client.next_event(10)
        assert event is not None, f"no {name}"
        if event["event"] == name:
            return dict(event["data"])


def test_the_estimate_is_calibrated_per_model_from_the_reported_usage(
    gateway_with: Start,
) -> None:
    with FakeProvider("openai") as server:
        _, client = gateway_with(lab_config(server))
        session = client.call("sessions.create", {})["id"]
        client.hello(topics=["session.*"])
        before = client.call("sessions.plan_switch", {"id": session, "model": "lab"})
        assert before["calibration"] == 1.0  # nothing reported yet: bytes / 4
        tools = before["tokens"]  # an empty conversation: the tools' definitions alone
        # This model counts twice what the estimate says: the first call's context is the
        # tools and "hello there" (3 tokens by bytes / 4, plus 4 for the message).
        reported = 2 * (tools + 7)
        server.script({"text": "hi", "usage": {"input_tokens": reported, "output_tokens": 1}})
        client.call("sessions.send", {"id": session, "text": "hello there"})
        assert answer_of(client, session)["usage"]["input_tokens"] == reported
        lab = client.call("sessions.plan_switch", {"id": session, "model": "lab"})
        local = client.call("sessions.plan_switch", {"id": session, "model": "local"})
    assert lab["calibration"] == 2.0 and local["calibration"] == 1.0  # per model
    assert lab["tokens"] == 2 * local["tokens"]


def test_the_token_estimator_is_pluggable(gateway_with: Start) -> None:
    counted: list[str] = []

    def nothing_but_framing(text: str) -> int:
        counted.append(text)
        return 0

    _, client = gateway_with(token_estimator=nothing_but_framing)
    session = client.call("sessions.create", {})["id"]
    client.hello(topics=["session.*"])
    client.call("sessions.send", {"id": session, "text": "hello there"})
    answer_of(client, session)
    plan = client.call("sessions.plan_switch", {"id": session, "model": "local"})
    assert plan["tokens"] == 2 * 4  # two messages, 4 tokens of framing each, text free
    assert "hello there" in counted
