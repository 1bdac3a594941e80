"""Breakers keyed by what failed: a model's failure opens the breaker of (provider, model) and
leaves the provider's other models in the chain; a provider's failure opens the provider's,
which stops all its models. Both levels are journaled, rehydrated and shown."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tek_actors import Client, Gateway, RateLimited, Unavailable
from tek_actors.providers.breaker import Board, Breakers, Health, event_data
from tek_actors.providers.calls import Call, exhausted
from tek_actors.providers.types import Message, ModelRequest, ProviderFailure
from tek_actors.runtime import FakeClock
from tek_actors.testing.fake_providers import FakeProvider
from tests.providers.conftest import ask

Start = Callable[..., tuple[Gateway, Client]]
NOW = 1_000_000.0


def two_models(server: FakeProvider, **extra: Any) -> dict[str, Any]:
    """`main` (p1's m1) falling back to `other` (p1's m2): one server, two models."""
    return {
        "providers": {
            "p1": {"kind": "openai", "base_url": server.base_url, "api_key": "sk-k-0001", **extra}
        },
        "models": {
            "main": {"provider": "p1", "model": "m1", "fallbacks": ["other"]},
            "other": {"provider": "p1", "model": "m2"},
        },
        "default_model": "main",
    }


def models_sent(server: FakeProvider) -> list[str]:
    return [r.body["model"] for r in server.requests if r.body]


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


# -- the pure part -----------------------------------------------------------------------------


def failure(kind: str, **kw: Any) -> ProviderFailure:
    return ProviderFailure(kind, f"p: {kind}", **kw)  # type: ignore[arg-type]


def test_a_model_s_failure_opens_only_that_model_s_breaker() -> None:
    board, breakers = Board(), Breakers()
    changes = board.failed(
        breakers, "p", "m1", failure("rate_limited"), trials=(), now=NOW, fingerprint=None
    )
    assert [key for key, _ in changes] == [("p", "m1")]
    for key, health in changes:
        breakers = breakers.with_health(key, health)
    assert not board.verdict(breakers, "p", "m1", NOW).passes
    assert board.verdict(breakers, "p", "m2", NOW).gate == "closed"
    assert breakers.of(("p", None)).state == "healthy"


def test_a_provider_s_failures_open_its_breaker_for_every_model() -> None:
    board, breakers = Board(), Breakers()
    for model in ("m1", "m2", "m1"):  # consecutive for the provider, whichever model
        for key, health in board.failed(
            breakers, "p", model, failure("connection"), trials=(), now=NOW, fingerprint=None
        ):
            breakers = breakers.with_health(key, health)
    assert breakers.of(("p", None)).state == "open"
    for model in ("m1", "m2", "m3"):
        verdict = board.verdict(breakers, "p", model, NOW)
        assert verdict.gate == "open" and verdict.blocking == ("p", None)


def test_a_model_s_failure_in_the_provider_s_trial_shows_the_provider_is_back() -> None:
    board = Board()
    breakers = Breakers().with_health(("p", None), Health(state="open", until=NOW - 1, opens=1))
    verdict = board.verdict(breakers, "p", "m1", NOW)
    assert verdict.gate == "trial" and verdict.trials == (("p", None),)
    board.begin(verdict.trials)
    assert board.verdict(breakers, "p", "m2", NOW).gate == "trialing"  # one trial at a time
    board.end(verdict.trials)
    changes = dict(
        board.failed(
            breakers,
            "p",
            "m1",
            failure("rate_limited"),
            trials=verdict.trials,
            now=NOW,
            fingerprint=None,
        )
    )
    assert changes[("p", None)].state == "healthy"  # it answered: it is up
    assert changes[("p", "m1")].state == "rate_limited"


def test_a_success_closes_both_breakers() -> None:
    board = Board()
    breakers = Breakers().with_health(("p", "m1"), Health(state="open", until=NOW - 1))
    assert [key for key, _ in board.succeeded(breakers, "p", "m1")] == [("p", "m1")]


def test_both_levels_are_rebuilt_from_their_events_old_ones_included() -> None:
    limited = Health(state="rate_limited", until=NOW + 60, last_error="slow", opens=1)
    breakers = Breakers().applied(event_data(("p", "m1"), limited))
    breakers = breakers.applied(  # journaled before breakers had models: no "model" key
        {"provider": "p", "state": "open", "until": NOW + 30, "last_error": "down", "opens": 2}
    )
    assert breakers.of(("p", "m1")) == limited
    assert breakers.of(("p", None)).state == "open" and breakers.of(("p", "m2")) == Health()
    restored = Breakers.model_validate(breakers.model_dump(mode="json"))  # the snapshot
    assert restored == breakers
    assert Breakers.model_validate({"health": {"p": {"state": "open"}}}).models == {}
    assert breakers.without("p") == Breakers()


def test_the_message_of_a_chain_that_could_not_answer_never_says_healthy() -> None:
    request = ModelRequest(messages=[Message(role="user", content="x")])
    call = Call("c", ["main", "spare"], request, "call:c")
    call.failures["main"] = failure("connection")
    call.tried.append("main")
    call.skipped["spare"] = "p2's model m2 is rate_limited, back in 30 s: p2: HTTP 429"
    healthy = {"state": "healthy", "until": None, "last_error": None, "breaker": "healthy"}
    limited = {**healthy, "state": "rate_limited", "until": NOW + 30}
    entries = {
        "p1": {**healthy, "models": {"m1": healthy}},
        "p2": {**healthy, "models": {"m2": limited}},
    }
    error = exhausted(call, [("main", "p1", "m1"), ("spare", "p2", "m2")], entries, NOW)
    assert isinstance(error, Unavailable) and "healthy" not in error.message
    assert "main (p: connection)" in error.message and "spare (p2's model m2 is" in error.message
    assert error.retry_after_ms == 30_000


# -- against the server ------------------------------------------------------------------------


def test_a_429_for_one_model_falls_back_to_another_model_of_the_same_provider(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script({"status": 429, "headers": {"retry-after": "90"}})
    _, client = gateway_on(two_models(openai_server), clock=clock)
    client.hello(topics=["provider.health"])
    reply = ask(client)
    assert reply["provider"] == "p1" and reply["model"] == "other" and reply["model_id"] == "m2"
    assert reply["fallback_from"] == ["main"]
    health = client.next_event(5)
    assert health is not None and health["data"]["provider"] == "p1"
    assert health["data"]["model"] == "m1" and health["data"]["state"] == "rate_limited"
    status = client.call("providers.status")["providers"]["p1"]
    assert status["state"] == "healthy" and status["until"] is None  # PROTOCOL's fields
    assert status["models"]["m1"]["state"] == "rate_limited"
    assert status["models"]["m1"]["until"] == pytest.approx(clock.time() + 90)
    assert status["models"]["m2"]["state"] == "healthy"
    listed = client.call("providers.list")["providers"]["p1"]
    assert listed["state"] == "healthy"
    assert listed["model_states"] == {"m1": "rate_limited", "m2": "healthy"}
    assert ask(client)["model"] == "other"  # m1's breaker is open: not even tried
    assert models_sent(openai_server) == ["m1", "m2", "m2"]


def test_every_model_rate_limited_is_rate_limited_with_the_soonest_return(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script(
        {"status": 429, "headers": {"retry-after": "90"}},
        {"status": 429, "headers": {"retry-after": "75"}},
    )
    _, client = gateway_on(two_models(openai_server), clock=FakeClock())
    with pytest.raises(RateLimited) as caught:
        ask(client)
    assert caught.value.retry_after_ms == 75_000
    assert "healthy" not in caught.value.message
    models = caught.value.details["providers"]["p1"]["models"]
    assert {m: e["state"] for m, e in models.items()} == {
        "m1": "rate_limited",
        "m2": "rate_limited",
    }


def test_connection_refused_opens_the_provider_s_breaker_for_all_its_models(
    refused_url: str, openai_server: FakeProvider, gateway_on: Start
) -> None:
    doc = two_models(openai_server)
    doc["providers"]["dead"] = {"kind": "openai", "base_url": refused_url}
    doc["models"]["x1"] = {"provider": "dead", "model": "d1", "fallbacks": ["x2", "main"]}
    doc["models"]["x2"] = {"provider": "dead", "model": "d2", "fallbacks": ["main"]}
    _, client = gateway_on(doc, clock=FakeClock())
    assert ask(client, model="x1")["fallback_from"] == ["x1", "x2"]  # two failures of dead
    assert ask(client, model="x1")["fallback_from"] == ["x1"]  # the third opens it: x2 skipped
    dead = client.call("providers.status")["providers"]["dead"]
    assert dead["state"] == "open" and "cannot connect" in dead["last_error"]
    assert {m: e["state"] for m, e in dead["models"].items()} == {"d1": "healthy", "d2": "healthy"}
    reply = ask(client, model="x2")  # its own model never failed alone, yet it is not tried
    assert reply["model"] == "main" and reply["fallback_from"] == []


def test_a_model_s_breaker_survives_a_restart(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    openai_server.script({"status": 429, "headers": {"retry-after": "300"}})
    gateway, client = gateway_on(two_models(openai_server), clock=clock)
    ask(client)
    before = client.call("providers.status")["providers"]["p1"]["models"]["m1"]
    gateway.restart()
    after = client.call("providers.status")["providers"]["p1"]
    assert after["models"]["m1"] == before and before["state"] == "rate_limited"
    assert after["state"] == "healthy"
    assert ask(client)["model"] == "other"
    assert models_sent(openai_server) == ["m1", "m2", "m2"]  # m1 not hammered after the restart
    clock.advance(301)
    assert ask(client)["model"] == "main"  # its trial


def test_a_model_the_server_does_not_have_falls_back_and_opens_that_model_s_breaker(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script(
        {
            "status": 404,
            "error_code": "model_not_found",
            "error_message": "The model `m1` does not exist",
        }
    )
    _, client = gateway_on(two_models(openai_server), clock=FakeClock())
    assert ask(client)["model"] == "other"
    status = client.call("providers.status")["providers"]["p1"]
    assert status["state"] == "healthy" and status["models"]["m1"]["state"] == "open"
