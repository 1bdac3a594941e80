"""The ProviderActor against real HTTP servers on loopback: streamed text and tool calls in both
APIs, every error class, the breaker, retries, failover, persisted health and key changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from loguru import logger

from tek_actors import Client, Gateway, InvalidValue, RateLimited, Unavailable
from tek_actors.runtime import FakeClock
from tek_actors.testing.fake_providers import FakeProvider
from tests.providers.conftest import ask, provider_config

Start = Callable[..., tuple[Gateway, Client]]


# -- streamed replies in both APIs ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_streamed_text_arrives_as_deltas_and_as_one_reply(kind: str, gateway_on: Start) -> None:
    with FakeProvider(kind) as server:
        server.script(
            {"text": "the quick brown fox", "usage": {"input_tokens": 7, "output_tokens": 4}}
        )
        _, client = gateway_on(provider_config(server))
        client.hello(topics=["provider.delta"])
        reply = ask(client, "hi", stream=True)
        assert reply["text"] == "the quick brown fox" and reply["finish_reason"] == "stop"
        assert reply["model"] == "main" and reply["provider"] == "p1" and reply["model_id"] == "m1"
        assert reply["usage"] == {"input_tokens": 7, "output_tokens": 4}
        pieces = []
        while "".join(pieces) != reply["text"]:
            event = client.next_event(5)
            assert event is not None and event["seq"] is None  # ephemeral
            pieces.append(event["data"]["text"])
        assert len(pieces) > 1
        sent = server.requests[0].body
        assert sent is not None and sent["stream"] is True and sent["model"] == "m1"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_streamed_tool_calls_come_back_whole(kind: str, gateway_on: Start) -> None:
    calls = [
        {"id": "c1", "name": "shell", "arguments": {"argv": ["ls", "-l"]}},
        {"id": "c2", "name": "read_file", "arguments": {"path": "/tmp/x", "max": 10}},
    ]
    with FakeProvider(kind) as server:
        server.script({"text": "let me look", "tool_calls": calls})
        _, client = gateway_on(provider_config(server))
        tools = [{"name": "shell", "parameters": {"type": "object"}}]
        reply = ask(client, "list files", tools=tools)
        assert reply["finish_reason"] == "tool_calls" and reply["text"] == "let me look"
        assert reply["tool_calls"] == calls
        body = server.requests[0].body
        assert body is not None
        names = [t.get("name") or t["function"]["name"] for t in body["tools"]]
        assert names == ["shell"]


def test_tool_results_go_back_in_each_api_s_own_shape(
    openai_server: FakeProvider, anthropic_server: FakeProvider, gateway_on: Start
) -> None:
    doc = provider_config(openai_server)
    doc["providers"]["a"] = {"kind": "anthropic", "base_url": anthropic_server.base_url}
    doc["providers"]["a"]["api_key"] = "sk-ant-key-0003"
    doc["models"]["claude"] = {"provider": "a", "model": "claude-x"}
    _, client = gateway_on(doc)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "t1", "name": "shell", "arguments": {"argv": ["date"]}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Mon Nov 23"},
    ]
    client.call("providers.complete", {"model": "main", "messages": messages})
    client.call("providers.complete", {"model": "claude", "messages": messages})
    openai_body = openai_server.requests[0].body
    assert openai_body is not None
    assert openai_body["messages"][2]["tool_calls"][0]["function"]["arguments"] == json.dumps(
        {"argv": ["date"]}
    )
    assert openai_body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "Mon Nov 23",
    }
    anthropic = anthropic_server.requests[0]
    assert anthropic.body is not None and anthropic.body["system"] == "be brief"
    assert anthropic.headers["x-api-key"] == "sk-ant-key-0003"
    assert anthropic.headers["anthropic-version"]
    turns = anthropic.body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0] == {
        "type": "tool_use",
        "id": "t1",
        "name": "shell",
        "input": {"argv": ["date"]},
    }
    assert turns[2]["content"][0]["type"] == "tool_result"
    assert turns[2]["content"][0]["tool_use_id"] == "t1"


# -- error classes -------------------------------------------------------------------------


def test_a_bad_request_is_not_retried_and_not_held_against_the_provider(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script({"status": 400, "error_message": "messages[0].role is wrong"})
    _, client = gateway_on(provider_config(openai_server))
    with pytest.raises(InvalidValue) as caught:
        ask(client)
    assert caught.value.details["kind"] == "bad_request" and "role is wrong" in caught.value.message
    assert len(openai_server.requests) == 1
    assert client.call("providers.status")["providers"]["p1"]["state"] == "healthy"


@pytest.mark.parametrize(
    ("kind", "script", "limit", "prompt"),
    [
        (
            "openai",
            {
                "status": 400,
                "error_code": "context_length_exceeded",
                "error_message": "This model's maximum context length is 8192 tokens. "
                "However, your messages resulted in 9000 tokens.",
            },
            8192,
            9000,
        ),
        (
            "anthropic",
            {"status": 400, "error_message": "prompt is too long: 210000 tokens > 200000 maximum"},
            200000,
            210000,
        ),
    ],
)
def test_context_too_long_is_a_structured_error_with_the_numbers(
    kind: str, script: dict[str, Any], limit: int, prompt: int, gateway_on: Start
) -> None:
    with FakeProvider(kind) as server:
        server.script(script)
        _, client = gateway_on(provider_config(server))
        with pytest.raises(InvalidValue) as caught:
            ask(client)
        details = caught.value.details
        assert details["kind"] == "context_too_long"
        assert details["limit_tokens"] == limit and details["prompt_tokens"] == prompt
        assert len(server.requests) == 1


def test_quota_is_never_retried_and_disables_the_provider_until_its_config_changes(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script(
        {"status": 429, "error_code": "insufficient_quota", "error_message": "You exceeded it"}
    )
    _, client = gateway_on(provider_config(openai_server))
    with pytest.raises(Unavailable) as caught:
        ask(client)
    assert "p1" in caught.value.message
    assert len(openai_server.requests) == 1  # never retried
    status = client.call("providers.status")["providers"]["p1"]
    assert status["state"] == "error" and "exceeded" in status["last_error"]
    with pytest.raises(Unavailable):
        ask(client)
    assert len(openai_server.requests) == 1  # disabled: not even tried
    client.call("config.set", {"path": "providers.p1.api_key", "value": "sk-paid-key-0009"})
    assert ask(client)["provider"] == "p1"
    assert client.call("providers.status")["providers"]["p1"]["state"] == "healthy"


def test_auth_failure_disables_and_never_leaks_the_key(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script(
        {
            "status": 401,
            "error_message": "Incorrect API key provided: sk-first-key-0001. You can find it...",
        }
    )
    lines: list[str] = []
    logger.enable("tek_actors")
    sink = logger.add(lines.append, level="DEBUG")
    try:
        _, client = gateway_on(provider_config(openai_server))
        client.hello(since_seq=0)
        with pytest.raises(Unavailable) as caught:
            ask(client)
        text = caught.value.message + json.dumps(caught.value.details)
        text += json.dumps(client.call("providers.status"))
        health = client.next_event(5)
        while health is not None and health["event"] != "provider.health":
            health = client.next_event(5)
        text += json.dumps(health)
    finally:
        logger.remove(sink)
        logger.disable("tek_actors")
    assert "HTTP 401" in text and any("HTTP 401" in line for line in lines)
    assert "sk-first-key-0001" not in text + "".join(lines)
    assert openai_server.requests[0].headers["authorization"] == "Bearer sk-first-key-0001"


def test_a_missing_key_variable_is_a_clear_error_and_nothing_is_sent(
    openai_server: FakeProvider, gateway_on: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEK_TEST_NO_SUCH_KEY", raising=False)
    doc = provider_config(openai_server)
    del doc["providers"]["p1"]["api_key"]
    doc["providers"]["p1"]["api_key_env"] = "TEK_TEST_NO_SUCH_KEY"
    _, client = gateway_on(doc)
    with pytest.raises(Unavailable) as caught:
        ask(client)
    assert "TEK_TEST_NO_SUCH_KEY is not set" in caught.value.message
    assert openai_server.requests == []


def test_api_key_env_is_read_from_the_environment(
    openai_server: FakeProvider, gateway_on: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEK_TEST_KEY", "sk-from-env-0042")
    doc = provider_config(openai_server)
    del doc["providers"]["p1"]["api_key"]
    doc["providers"]["p1"]["api_key_env"] = "TEK_TEST_KEY"
    _, client = gateway_on(doc)
    ask(client)
    assert openai_server.requests[0].headers["authorization"] == "Bearer sk-from-env-0042"


def test_connection_refused_and_timeouts_fail_over(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    doc = provider_config(openai_server)
    doc["providers"]["dead"] = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    doc["providers"]["slow"] = {
        "kind": "openai",
        "base_url": openai_server.base_url,
        "timeout_s": 0.3,
        "api_key": "sk-slow-key-0005",
    }
    doc["models"]["a"] = {"provider": "dead", "model": "x", "fallbacks": ["b", "main"]}
    doc["models"]["b"] = {"provider": "slow", "model": "y"}
    _, client = gateway_on(doc)
    openai_server.script({"delay_s": 5.0}, {"text": "from main"})
    reply = ask(client, model="a")
    assert reply["text"] == "from main" and reply["fallback_from"] == ["a", "b"]
    assert reply["model"] == "main"
    status = client.call("providers.status")["providers"]
    assert status["dead"]["state"] == "healthy"  # one failure is not three


# -- failover and the breaker --------------------------------------------------------------


def test_a_429_fails_over_opens_the_breaker_and_honours_retry_after(
    openai_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script({"status": 429, "headers": {"retry-after": "120"}})
    _, client = gateway_on(provider_config(openai_server, second_openai), clock=clock)
    client.hello(topics=["provider.health"])
    reply = ask(client)
    assert reply["provider"] == "p2" and reply["model"] == "spare"
    assert reply["fallback_from"] == ["main"]
    health = client.next_event(5)
    assert health is not None and health["data"]["provider"] == "p1"
    assert health["data"]["model"] == "m1"  # a 429 is the model's: p1's own breaker is closed
    assert health["data"]["state"] == "rate_limited"
    assert health["data"]["until"] == pytest.approx(clock.time() + 120)  # > the 60 s floor
    for _ in range(3):  # while open, nothing reaches the primary
        assert ask(client)["provider"] == "p2"
    assert len(openai_server.requests) == 1
    clock.advance(121)  # half-open: one trial goes through
    p1 = client.call("providers.status")["providers"]["p1"]
    assert p1["breaker"] == "healthy" and p1["models"]["m1"]["breaker"] == "half_open"
    assert ask(client)["provider"] == "p1"
    assert len(openai_server.requests) == 2
    recovered = client.next_event(5)
    assert recovered is not None and recovered["data"]["state"] == "healthy"


def test_half_open_lets_exactly_one_trial_through(
    openai_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script({"status": 429})
    _, client = gateway_on(provider_config(openai_server, second_openai), clock=clock)
    ask(client)
    clock.advance(61)
    openai_server.script({"delay_s": 2.0, "text": "trial"})  # the trial stays in flight
    trial = client.submit("providers.complete", {"messages": [{"role": "user", "content": "t"}]})
    openai_server.wait_for_requests(2)
    assert ask(client)["provider"] == "p2"  # the trial is busy: the next call fails over
    assert trial.result(10)["text"] == "trial"
    assert len(openai_server.requests) == 2


def test_three_server_errors_open_the_breaker_and_a_failed_trial_escalates(
    openai_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    _, client = gateway_on(provider_config(openai_server, second_openai), clock=clock)
    openai_server.script(*[{"status": 500}] * 3)
    for _ in range(3):
        assert ask(client)["provider"] == "p2"
    first = client.call("providers.status")["providers"]["p1"]
    assert first["state"] == "open" and first["until"] == pytest.approx(clock.time() + 60)
    clock.advance(61)
    openai_server.script({"status": 503})  # the trial fails
    assert ask(client)["provider"] == "p2"
    second = client.call("providers.status")["providers"]["p1"]
    assert second["until"] == pytest.approx(clock.time() + 120)  # doubled


def test_all_providers_down_names_each_and_when_it_may_be_back(
    openai_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script({"status": 429, "headers": {"retry-after": "90"}})
    second_openai.script({"status": 429, "headers": {"retry-after-ms": "70000"}})
    _, client = gateway_on(provider_config(openai_server, second_openai), clock=clock)
    with pytest.raises(RateLimited) as caught:
        ask(client)
    error = caught.value
    assert "p1" in error.message and "p2" in error.message
    assert error.retry_after_ms == 70_000
    assert set(error.details["providers"]) == {"p1", "p2"}


def test_breaker_state_survives_a_restart(
    openai_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script(*[{"status": 500}] * 3)  # the provider's own breaker opens
    gateway, client = gateway_on(provider_config(openai_server, second_openai), clock=clock)
    for _ in range(3):
        ask(client)
    until = client.call("providers.status")["providers"]["p1"]["until"]
    gateway.restart()
    after = client.call("providers.status")["providers"]["p1"]
    assert after["state"] == "open" and after["until"] == until
    assert ask(client)["provider"] == "p2"
    assert len(openai_server.requests) == 3  # the restarted gateway did not hammer it


# -- streams that break ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_that_breaks_before_the_first_token_fails_over(
    kind: str, second_openai: FakeProvider, gateway_on: Start
) -> None:
    with FakeProvider(kind) as server:
        server.script({"close": True})
        _, client = gateway_on(provider_config(server, second_openai))
        reply = ask(client)
        assert reply["provider"] == "p2" and not reply["incomplete"]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_that_breaks_after_text_keeps_the_partial_reply_and_never_retries(
    kind: str, second_openai: FakeProvider, gateway_on: Start
) -> None:
    with FakeProvider(kind) as server:
        server.script({"text": "one two three four five six", "drop_after_chunks": 2})
        _, client = gateway_on(provider_config(server, second_openai))
        reply = ask(client)
        assert reply["incomplete"] is True and reply["finish_reason"] == "error"
        assert reply["provider"] == "p1" and reply["text"]
        assert "one two three four five six".startswith(reply["text"])
        assert reply["text"] != "one two three four five six"
        assert len(server.requests) == 1 and second_openai.requests == []


def test_an_anthropic_error_mid_stream_keeps_the_partial_reply(
    anthropic_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    anthropic_server.script(
        {"text": "partial answer", "midstream_error": {"type": "overloaded_error", "message": "x"}}
    )
    _, client = gateway_on(provider_config(anthropic_server, second_openai))
    reply = ask(client)
    assert reply["incomplete"] and reply["text"] == "partial answer"
    assert "overloaded_error" in reply["error"]


def test_anthropic_529_overloaded_fails_over(
    anthropic_server: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    anthropic_server.script({"status": 529})
    _, client = gateway_on(provider_config(anthropic_server, second_openai))
    reply = ask(client)
    assert reply["provider"] == "p2" and reply["fallback_from"] == ["main"]


# -- retries -------------------------------------------------------------------------------


def test_a_transient_failure_with_no_fallback_is_retried_with_backoff(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script({"status": 502}, {"status": 500}, {"text": "third time"})
    _, client = gateway_on(provider_config(openai_server))
    assert ask(client)["text"] == "third time"
    assert len(openai_server.requests) == 3  # the first try and two retries, no more
    openai_server.script(*[{"status": 500}] * 3)
    with pytest.raises(Unavailable):
        ask(client)


def test_retry_after_is_honoured_before_retrying(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script({"status": 503, "headers": {"retry-after": "7"}}, {"text": "later"})
    _, client = gateway_on(provider_config(openai_server), clock=clock)
    armed = clock.pending()
    future = client.submit("providers.complete", {"messages": [{"role": "user", "content": "x"}]})
    # Two timers: the request's deadline (the frontend's) and, once the failure came back, the
    # retry's.
    assert clock.wait_for_pending(armed + 2)
    clock.advance(6.5)
    assert len(openai_server.requests) == 1  # not yet: 7 s were asked for
    clock.advance(1.0)
    assert future.result(10)["text"] == "later"


# -- keys ------------------------------------------------------------------------------------


def test_after_a_key_change_the_next_request_carries_the_new_key(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    _, client = gateway_on(provider_config(openai_server, concurrency=1))
    ask(client)
    assert openai_server.requests[-1].headers["authorization"] == "Bearer sk-first-key-0001"
    watcher_topics = ["config.applied"]
    client.hello(topics=watcher_topics)
    client.call("config.set", {"path": "providers.p1.api_key", "value": "sk-rotated-key-7777"})
    applied = client.next_event(5)
    assert applied is not None and "providers" in applied["data"]["applied_by"]
    ask(client)
    assert openai_server.requests[-1].headers["authorization"] == "Bearer sk-rotated-key-7777"


def test_a_call_queued_behind_a_key_change_is_sent_with_the_new_key(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    _, client = gateway_on(provider_config(openai_server, concurrency=1))
    openai_server.script({"delay_s": 1.0, "text": "slow"})
    first = client.submit("providers.complete", {"messages": [{"role": "user", "content": "a"}]})
    openai_server.wait_for_requests(1)  # in flight with the old key: it was sent before
    queued = client.submit("providers.complete", {"messages": [{"role": "user", "content": "b"}]})
    client.call("config.set", {"path": "providers.p1.api_key", "value": "sk-rotated-key-8888"})
    assert first.result(10)["text"] == "slow" and queued.result(10)["text"] == "echo: b"
    keys = [r.headers["authorization"] for r in openai_server.requests]
    assert keys == ["Bearer sk-first-key-0001", "Bearer sk-rotated-key-8888"]
