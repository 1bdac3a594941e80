"""A busy provider makes a call wait, never fail: more callers than workers all get their
answer, callers are served in turn, the wait is published, and it ends only at its deadline
(`timeout`) or at the queue's bound (`overloaded`). The provider is a loopback server that holds
every request until the test lets it go, so nothing here depends on timing."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from tek_actors import Client, Gateway, Overloaded, RequestTimeout
from tek_actors.providers import Complete, CompletionDone, Message, ModelRequest
from tek_actors.runtime import FakeClock
from tek_actors.testing.fake_providers import FakeProvider
from tests.providers.conftest import provider_config

Start = Callable[..., tuple[Gateway, Client]]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def sent_texts(server: FakeProvider) -> list[str]:
    """The last user message of every request the server got, in the order it got them."""
    return [r.body["messages"][-1]["content"] for r in server.requests if r.body]


def waiting_events(client: Client, n: int) -> list[dict[str, Any]]:
    events = []
    while len(events) < n:
        event = client.next_event(10)
        assert event is not None, f"{len(events)} of {n} provider.waiting events came"
        if event["event"] == "provider.waiting":
            events.append(event["data"])
    return events


@pytest.fixture
def held(openai_server: FakeProvider) -> Iterator[FakeProvider]:
    """The OpenAI server, holding every request; whatever is still held at the end is let go
    (before the gateway stops), so no worker is left waiting on it."""
    openai_server.hold()
    yield openai_server
    openai_server.release_all()


class _Inbox(pykka.ThreadingActor):
    """Stands in for a session: collects what the provider actor tells it."""

    def __init__(self, out: queue.Queue[Any]) -> None:
        super().__init__()
        self.out = out

    def on_receive(self, message: Any) -> None:
        self.out.put(message)


@pytest.fixture
def inbox() -> Iterator[tuple[pykka.ActorRef[Any], queue.Queue[Any]]]:
    out: queue.Queue[Any] = queue.Queue()
    ref = _Inbox.start(out)
    yield ref, out
    ref.stop()


def done_of(out: queue.Queue[Any]) -> CompletionDone:
    while True:
        message = out.get(timeout=10)
        if isinstance(message, CompletionDone):
            return message


def ask_as_session(
    gateway: Gateway, ref: pykka.ActorRef[Any], call_id: str, session: str, text: str
) -> None:
    """What a session's turn sends the provider actor (sessions/session.py)."""
    providers = gateway._directory.lookup("providers")
    assert providers is not None
    request = ModelRequest(messages=[Message(role="user", content=text)])
    providers.tell(Complete(call_id, None, request, ref, session=session))


def test_more_callers_than_workers_all_get_their_answer_and_none_fails(
    held: FakeProvider, gateway_on: Start
) -> None:
    gateway, first = gateway_on(provider_config(held, concurrency=2))
    clients = [first, *(gateway.client() for _ in range(3))]
    try:
        first.hello(topics=["provider.waiting"])
        futures = [
            c.submit("providers.complete", user(f"{i}-{n}"))
            for i, c in enumerate(clients)
            for n in range(5)
        ]
        held.wait_for_held(2)
        waiting_events(first, 18)  # 20 calls, 2 workers: every other call waits, none fails
        assert client_status(first)["waiting"] == 18
        held.release_all()
        replies = [future.result(20) for future in futures]
    finally:
        for client in clients[1:]:
            client.close()
    assert sorted(r["text"] for r in replies) == sorted(
        f"echo: {i}-{n}" for i in range(4) for n in range(5)
    )
    assert all(r["provider"] == "p1" and r["fallback_from"] == [] for r in replies)
    assert len(held.requests) == 20  # each sent once: no retry, no failover


def client_status(client: Client) -> dict[str, Any]:
    status: dict[str, Any] = client.call("providers.status")["providers"]["p1"]
    return status


def test_callers_are_served_in_turn_whoever_queued_more(
    held: FakeProvider, gateway_on: Start
) -> None:
    gateway, a = gateway_on(provider_config(held, concurrency=1))
    b = gateway.client()
    try:
        a.hello(topics=["provider.waiting"])
        futures = [a.submit("providers.complete", user("a0"))]
        held.wait_for_held(1)
        futures += [a.submit("providers.complete", user(f"a{n}")) for n in range(1, 5)]
        assert [e["position"] for e in waiting_events(a, 4)] == [1, 2, 3, 4]
        futures.append(b.submit("providers.complete", user("b1")))
        (late,) = waiting_events(a, 1)
        assert late["position"] == 2 and late["waiting"] == 5  # next after a1, not last
        for sent in range(2, 7):
            held.release(1)
            held.wait_for_requests(sent)
        held.release(1)
        assert [f.result(10)["text"] for f in futures][-1] == "echo: b1"
    finally:
        b.close()
    assert sent_texts(held) == ["a0", "a1", "b1", "a2", "a3", "a4"]


def test_the_wait_is_published_naming_the_session(
    held: FakeProvider,
    gateway_on: Start,
    inbox: tuple[pykka.ActorRef[Any], queue.Queue[Any]],
) -> None:
    ref, out = inbox
    gateway, client = gateway_on(provider_config(held, concurrency=1))
    client.hello(topics=["provider.waiting", "provider.admitted"])
    ask_as_session(gateway, ref, "m-1/x", "s-first", "one")
    held.wait_for_held(1)
    ask_as_session(gateway, ref, "m-2/y", "s-second", "two")
    waiting = client.next_event(10)
    assert waiting is not None and waiting["event"] == "provider.waiting"
    assert waiting["seq"] is None  # ephemeral
    assert waiting["data"] == {
        "call_id": "m-2/y",
        "session": "s-second",
        "provider": "p1",
        "model": "main",
        "position": 1,
        "waiting": 1,
        "capacity": 1,
    }
    held.release(1)
    admitted = client.next_event(10)
    assert admitted is not None and admitted["event"] == "provider.admitted"
    assert admitted["data"]["call_id"] == "m-2/y" and admitted["data"]["session"] == "s-second"
    held.release_all()
    answers = {done_of(out).call_id, done_of(out).call_id}
    assert answers == {"m-1/x", "m-2/y"}


def test_a_deadline_that_passes_while_waiting_ends_the_call_timeout_unsent(
    held: FakeProvider, gateway_on: Start
) -> None:
    clock = FakeClock()
    _, client = gateway_on(provider_config(held, concurrency=1, timeout_s=30.0), clock=clock)
    client.hello(topics=["provider.waiting"])
    first = client.submit("providers.complete", user("first"), timeout=120)
    held.wait_for_held(1)
    # The requests' own deadlines (the frontend's, on the same clock) are later than the call's.
    second = client.submit("providers.complete", user("second"), timeout=120)
    waiting_events(client, 1)  # its deadline timer is armed
    clock.advance(31)  # the call's deadline: the provider's timeout_s
    with pytest.raises(RequestTimeout) as caught:
        second.result(10)
    error = caught.value
    assert "waited 31.0 s for capacity on p1" in error.message and "never sent" in error.message
    assert error.details["started"] is False and error.details["position"] == 1
    assert "healthy" not in error.message
    held.release_all()
    assert first.result(10)["text"] == "echo: first"
    assert sent_texts(held) == ["first"]
    assert client_status(client)["waiting"] == 0


def test_a_full_queue_answers_overloaded_with_when_to_come_back(
    held: FakeProvider,
    gateway_on: Start,
    inbox: tuple[pykka.ActorRef[Any], queue.Queue[Any]],
) -> None:
    ref, out = inbox
    doc = provider_config(held, concurrency=1, max_waiting=4)  # one call per caller
    gateway, client = gateway_on(doc)
    client.hello(topics=["provider.waiting"])
    ask_as_session(gateway, ref, "s1/a", "s1", "in flight")
    held.wait_for_held(1)
    ask_as_session(gateway, ref, "s1/b", "s1", "waits")
    waiting_events(client, 1)
    ask_as_session(gateway, ref, "s1/c", "s1", "over its share")
    refused = done_of(out)
    assert refused.call_id == "s1/c" and isinstance(refused.error, Overloaded)
    assert "this caller already has 1 waiting, its share" in refused.error.message
    for session in ("s2", "s3", "s4"):
        ask_as_session(gateway, ref, f"{session}/a", session, "waits")
    waiting_events(client, 3)
    ask_as_session(gateway, ref, "s5/a", "s5", "no room")
    full = done_of(out)
    assert full.call_id == "s5/a" and isinstance(full.error, Overloaded)
    assert "p1 is at capacity (concurrency 1) and 4 calls are waiting" in full.error.message
    assert full.error.retry_after_ms is not None and full.error.retry_after_ms >= 1000
    assert "healthy" not in full.error.message
    held.release_all()
    answered = {done_of(out).call_id for _ in range(5)}
    assert answered == {"s1/a", "s1/b", "s2/a", "s3/a", "s4/a"}


def test_a_busy_provider_does_not_fail_over_to_an_idle_fallback(
    held: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    _, client = gateway_on(provider_config(held, second_openai, concurrency=1))
    client.hello(topics=["provider.waiting"])
    first = client.submit("providers.complete", user("one"))
    held.wait_for_held(1)
    second = client.submit("providers.complete", user("two"))
    waiting_events(client, 1)
    held.release_all()
    assert [f.result(10)["provider"] for f in (first, second)] == ["p1", "p1"]
    assert second_openai.requests == []


def test_overflow_to_fallback_sends_the_call_a_busy_primary_cannot_take_to_an_idle_one(
    held: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    doc = provider_config(held, second_openai, concurrency=1)
    doc["models"]["main"]["overflow_to_fallback"] = True
    _, client = gateway_on(doc)
    first = client.submit("providers.complete", user("one"))
    held.wait_for_held(1)
    reply = client.call("providers.complete", user("two"))
    assert reply["provider"] == "p2" and reply["model"] == "spare"
    held.release_all()
    assert first.result(10)["provider"] == "p1"


def test_waiting_calls_fail_over_when_their_provider_starts_failing(
    held: FakeProvider, second_openai: FakeProvider, gateway_on: Start
) -> None:
    _, client = gateway_on(provider_config(held, second_openai, concurrency=1))
    client.hello(topics=["provider.waiting"])
    held.script({"status": 429, "headers": {"retry-after": "120"}})
    first = client.submit("providers.complete", user("one"))
    held.wait_for_held(1)
    waiting = [client.submit("providers.complete", user(f"w{n}")) for n in range(3)]
    waiting_events(client, 3)
    held.release(1)  # the 429: the model's breaker opens, the waiting calls go to the fallback
    replies = [f.result(10) for f in (first, *waiting)]
    assert [r["provider"] for r in replies] == ["p2"] * 4
    assert replies[0]["fallback_from"] == ["main"]
    assert len(held.requests) == 1


def test_sessions_on_a_busy_provider_all_get_their_answer(
    held: FakeProvider, gateway_on: Start
) -> None:
    doc = provider_config(held, concurrency=1)
    doc["models"]["main"]["context_window"] = 100_000
    _, client = gateway_on(doc)
    client.hello(topics=["provider.waiting", "session.message", "session.error"])
    sessions = [client.call("sessions.create", {})["id"] for _ in range(5)]
    for n, session in enumerate(sessions):
        client.call("sessions.send", {"id": session, "text": f"turn {n}"})
    held.wait_for_held(1)
    assert len(waiting_events(client, 4)) == 4  # one turn on the worker, four waiting
    held.release_all()
    answers = {}
    while len(answers) < len(sessions):
        event = client.next_event(20)
        assert event is not None, f"answers came for {sorted(answers)} only"
        if event["event"].startswith("session."):
            answers[event["data"]["session"]] = event
    assert {e["event"] for e in answers.values()} == {"session.message"}
    assert sorted(sent_texts(held)) == sorted(f"turn {n}" for n in range(5))


def test_a_turn_that_finds_the_waiting_queue_full_waits_and_is_answered(
    held: FakeProvider, gateway_on: Start
) -> None:
    """Past the provider's waiting bound a call is refused `overloaded`; a session's turn then
    says it waits and asks again later: the turn is answered, never an error entry."""
    doc = provider_config(held, concurrency=1, max_waiting=1)
    doc["models"]["main"]["context_window"] = 100_000
    _, client = gateway_on(doc)
    client.hello(topics=["session.waiting", "session.message", "session.error"])
    sessions = [client.call("sessions.create", {})["id"] for _ in range(5)]
    for n, session in enumerate(sessions):
        client.call("sessions.send", {"id": session, "text": f"turn {n}"})
    held.wait_for_held(1)  # one call on the worker, one waiting, three refused: they wait
    refused = set()
    while len(refused) < 3:
        event = client.next_event(20)
        assert event is not None, f"{len(refused)} of 3 turns said they wait"
        assert event["event"] == "session.waiting", event
        refused.add(event["data"]["session"])
    held.release_all()
    answers: dict[str, dict[str, Any]] = {}
    while len(answers) < len(sessions):
        event = client.next_event(30)
        assert event is not None, f"answers came for {sorted(answers)} only"
        if event["event"] != "session.waiting":
            answers[event["data"]["session"]] = event
    assert {e["event"] for e in answers.values()} == {"session.message"}
    assert sorted(set(sent_texts(held))) == sorted(f"turn {n}" for n in range(5))
