"""`providers.reset`: a breaker closed by hand (a provider's own, or one model's), journaled as
`provider.health` like every breaker change, kept through a restart; an unknown provider or
model is not_found and bad input invalid_request, and neither changes anything."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tek_actors import Client, Gateway, InvalidRequest, NotFound
from tek_actors.providers.breaker import Board, Breakers, Health
from tek_actors.runtime import FakeClock
from tek_actors.testing.fake_providers import FakeProvider
from tests.providers.conftest import ask
from tests.providers.test_breakers import models_sent, two_models
from tests.waiting import events_until

Start = Callable[..., tuple[Gateway, Client]]


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_the_pure_reset_closes_one_breaker_and_forgets_its_count() -> None:
    board, breakers = Board(), Breakers()
    board.failures[("p", None)] = 2
    board.trials.add(("p", "m1"))
    assert board.reset(breakers, ("p", None)) == []  # closed already: nothing to journal
    assert ("p", None) not in board.failures
    breakers = breakers.with_health(("p", "m1"), Health(state="open", until=1e12, opens=3))
    assert board.reset(breakers, ("p", "m1")) == [(("p", "m1"), Health())]
    assert ("p", "m1") not in board.trials


def test_a_model_s_breaker_is_closed_by_hand_and_stays_closed_after_a_restart(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script({"status": 429, "headers": {"retry-after": "900"}})
    gateway, client = gateway_on(two_models(openai_server), clock=FakeClock())
    assert ask(client)["model"] == "other"  # m1 is rate limited for 15 minutes
    status = client.call("providers.status")["providers"]["p1"]
    assert status["models"]["m1"]["state"] == "rate_limited"
    client.hello(topics=["provider.health"])
    answer = client.call("providers.reset", {"name": "p1", "model": "m1"})
    assert answer == {"name": "p1", "model": "m1", "changed": True}
    health = events_until(client, lambda e: e["event"] == "provider.health")[-1]
    assert health["seq"] is not None  # durable
    assert health["data"]["model"] == "m1" and health["data"]["state"] == "healthy"
    listed = client.call("providers.list")["providers"]["p1"]
    assert listed["model_states"] == {"m1": "healthy", "m2": "healthy"}
    assert ask(client)["model"] == "main"  # tried again at once
    gateway.restart()
    status = client.call("providers.status")["providers"]["p1"]
    assert status["models"]["m1"]["state"] == "healthy"
    assert models_sent(openai_server) == ["m1", "m2", "m1"]


def test_a_provider_s_own_breaker_is_closed_by_hand(
    refused_url: str, openai_server: FakeProvider, gateway_on: Start
) -> None:
    doc = two_models(openai_server)
    doc["providers"]["dead"] = {"kind": "openai", "base_url": refused_url}
    doc["models"]["x1"] = {"provider": "dead", "model": "d1", "fallbacks": ["main"]}
    _, client = gateway_on(doc, clock=FakeClock())
    for _ in range(3):
        ask(client, model="x1")
    assert client.call("providers.status")["providers"]["dead"]["state"] == "open"
    assert client.call("providers.reset", {"name": "dead"})["changed"] is True
    dead = client.call("providers.status")["providers"]["dead"]
    assert dead["state"] == "healthy" and dead["breaker"] == "healthy"
    again = client.call("providers.reset", {"name": "dead", "model": None})
    assert again == {"name": "dead", "model": None, "changed": False}


def test_an_unknown_provider_or_model_is_not_found_and_changes_nothing(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script({"status": 429, "headers": {"retry-after": "900"}})
    _, client = gateway_on(two_models(openai_server), clock=FakeClock())
    ask(client)
    before = client.call("providers.status")
    with pytest.raises(NotFound) as missing:
        client.call("providers.reset", {"name": "nope"})
    assert missing.value.details == {"name": "nope", "known": ["local", "p1"]}
    with pytest.raises(NotFound) as missing:
        client.call("providers.reset", {"name": "p1", "model": "m9"})
    assert missing.value.details["known"] == ["m1", "m2"]
    assert client.call("providers.status") == before


BAD: st.SearchStrategy[Any] = st.one_of(
    st.just({}),
    st.just({"name": ""}),
    st.text(min_size=65, max_size=80).map(lambda text: {"name": text}),
    st.fixed_dictionaries({"name": st.one_of(st.integers(), st.none(), st.booleans())}),
    st.fixed_dictionaries({"name": st.just("p1"), "model": st.one_of(st.integers(), st.just(""))}),
    st.fixed_dictionaries({"name": st.just("p1"), "other": st.text()}),
)


def test_bad_payloads_are_refused_and_change_nothing(
    openai_server: FakeProvider, gateway_on: Start
) -> None:
    openai_server.script({"status": 429, "headers": {"retry-after": "900"}})
    _, client = gateway_on(two_models(openai_server), clock=FakeClock())
    ask(client)
    before = client.call("providers.status")

    @settings(max_examples=30, deadline=None)
    @given(payload=BAD)
    def refused(payload: Any) -> None:
        with pytest.raises(InvalidRequest):
            client.call("providers.reset", payload)

    refused()
    assert client.call("providers.status") == before
