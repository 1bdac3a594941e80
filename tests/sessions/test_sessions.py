"""Sessions: the directory, durable sends, turns with streamed answers, passivation."""

from __future__ import annotations

import pytest

from tek_actors import Client, InvalidValue, NotFound, Overloaded
from tek_actors.runtime import FakeClock
from tek_actors.testing.fake_providers import FakeProvider
from tests.conftest import Start
from tests.sessions.conftest import answer_of, lab_config, until, until_restarting


def test_create_list_rename_delete(gateway_with: Start) -> None:
    _, client = gateway_with()
    first = client.call("sessions.create", {"title": "plans"})
    second = client.call("sessions.create", {"model": "local"})
    assert first["id"] != second["id"] and first["title"] == "plans"
    ids = [s["id"] for s in client.call("sessions.list")["items"]]
    assert ids == [first["id"], second["id"]]
    assert client.call("sessions.rename", {"id": first["id"], "title": "Plans"})["title"] == "Plans"
    assert client.call("sessions.delete", {"id": second["id"]})["deleted"]
    assert [s["id"] for s in client.call("sessions.list")["items"]] == [first["id"]]
    for verb, payload in (
        ("sessions.get", {"id": second["id"]}),
        ("sessions.send", {"id": "s-nope", "text": "hi"}),
        ("sessions.rename", {"id": "s-nope", "title": "x"}),
    ):
        with pytest.raises(NotFound):
            client.call(verb, payload)
    with pytest.raises(InvalidValue) as caught:
        client.call("sessions.create", {"model": "ghost"})
    assert caught.value.details["path"] == "model"


def test_send_is_durable_then_the_turn_streams_and_is_journaled(gateway_with: Start) -> None:
    _, client = gateway_with()
    session = client.call("sessions.create", {})
    client.hello(topics=["session.*"])
    sent = client.call("sessions.send", {"id": session["id"], "text": "hello there"})
    assert sent["message_id"].startswith("m-")
    deltas = []
    while True:
        event = client.next_event(10)
        assert event is not None
        if event["event"] == "session.delta":
            assert event["seq"] is None
            deltas.append(event["data"]["text"])
        if event["event"] == "session.message":
            answer = event["data"]
            break
    assert answer["text"] == "(local model) You said: hello there" == "".join(deltas)
    assert answer["turn"] == sent["message_id"] and answer["model"] == "local"
    assert answer["local"] is True and answer["usage"]["input_tokens"] > 0
    got = client.call("sessions.get", {"id": session["id"]})
    assert [e["role"] for e in got["entries"]] == ["user", "assistant"]
    assert got["queue"] == [] and got["turn"] is None


def test_an_idem_resend_stores_one_message(gateway_with: Start) -> None:
    _, client = gateway_with()
    session = client.call("sessions.create", {})
    payload = {"id": session["id"], "text": "only once"}
    first = client.call("sessions.send", payload, idem="send-1")
    assert client.call("sessions.send", payload, idem="send-1") == first
    client.hello(since_seq=0, topics=["session.message"])
    answer_of(client, session["id"])
    users = [
        e
        for e in client.call("sessions.get", {"id": session["id"]})["entries"]
        if e["role"] == "user"
    ]
    assert len(users) == 1


def test_turns_run_one_at_a_time_in_order_and_the_queue_is_bounded(gateway_with: Start) -> None:
    with FakeProvider("openai") as server:
        _, client = gateway_with(lab_config(server, limits={"session_queue": 2}))
        session = client.call("sessions.create", {})
        server.script({"delay_s": 1.0, "text": "first answer"}, {"text": "second answer"})
        client.hello(topics=["session.message"])
        client.call("sessions.send", {"id": session["id"], "text": "one"})
        client.call("sessions.send", {"id": session["id"], "text": "two"})
        with pytest.raises(Overloaded) as caught:
            client.call("sessions.send", {"id": session["id"], "text": "three"})
        assert caught.value.details["limit"] == 2
        assert answer_of(client, session["id"])["text"] == "first answer"
        assert answer_of(client, session["id"])["text"] == "second answer"
        second = server.requests[1].body
        assert second is not None
        assert [m["content"] for m in second["messages"]] == ["one", "first answer", "two"]


def test_a_provider_failure_is_a_visible_error_entry(gateway_with: Start) -> None:
    config = {
        "providers": {"dead": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"dead": {"provider": "dead", "model": "m"}},
    }
    _, client = gateway_with(config)
    session = client.call("sessions.create", {"model": "dead"})
    client.hello(topics=["session.*"])
    client.call("sessions.send", {"id": session["id"], "text": "anyone?"})
    error = answer_of(client, session["id"])
    assert error["role"] == "error" and "dead" in error["text"]
    assert error["error"]["code"] == "unavailable"
    roles = [e["role"] for e in client.call("sessions.get", {"id": session["id"]})["entries"]]
    assert roles == ["user", "error"]


def test_idle_sessions_are_passivated_and_come_back_whole(gateway_with: Start) -> None:
    clock = FakeClock()
    gateway, client = gateway_with(
        {"limits": {"session_idle_s": 60, "sessions_live": 2}}, clock=clock
    )
    ids = [client.call("sessions.create", {})["id"] for _ in range(3)]
    client.hello(topics=["session.message"])
    watcher = gateway.client()
    try:
        watcher.hello(topics=["session.passivated"])
        for session_id in ids:
            client.call("sessions.send", {"id": session_id, "text": f"hi {session_id}"})
            answer_of(client, session_id)
        # Past the bound the LRU one is told to go; it goes on its own thread, in its time.
        first_gone = watcher.next_event(10)
        assert first_gone is not None and first_gone["data"]["session"] == ids[0]
        assert client.call("sessions.list")["live"] <= 2  # past the bound: the LRU one went
        live = client.call("sessions.list")["live"]
        clock.advance(61)  # idle for a minute: every live one goes
        gone = set()
        while len(gone) < live:
            event = watcher.next_event(10)
            assert event is not None, "a session was not passivated"
            gone.add(event["data"]["session"])
    finally:
        watcher.close()
    for session_id in ids:  # started again on demand, from snapshot and journal
        entries = client.call("sessions.get", {"id": session_id})["entries"]
        assert entries[0]["text"] == f"hi {session_id}" and len(entries) == 2


def test_a_model_call_lost_with_a_provider_actor_crash_is_sent_again(gateway_with: Start) -> None:
    clock = FakeClock()
    with FakeProvider("openai") as server:
        server.script({"delay_s": 30.0, "text": "lost with the actor"}, {"text": "the answer"})
        config = lab_config(server, gateway={"supervision": {"backoff_jitter": 0.0}})
        _, client = gateway_with(config, clock=clock)
        session = client.call("sessions.create", {})["id"]
        client.hello(topics=["session.message", "session.error", "gateway.actor_restarted"])
        client.call("sessions.send", {"id": session, "text": "are you there?"})
        server.wait_for_requests(1)  # the call is out, and will not come back
        client.call("test.crash", {"actor": "providers"})
        until_restarting(client, "providers")
        clock.advance(0.5)  # the restart's backoff
        event = client.next_event(10)
        assert event is not None and event["event"] == "gateway.actor_restarted"
        clock.advance(5.0)  # the session checks on its call: the new actor never heard of it
        answer = answer_of(client, session)
        assert answer["text"] == "the answer" and len(server.wait_for_requests(2)) == 2


def test_a_session_that_crashes_mid_turn_is_resumed_without_anyone_asking(
    gateway_with: Start,
) -> None:
    clock = FakeClock()
    with FakeProvider("openai") as server:
        server.script({"delay_s": 30.0, "text": "never delivered"}, {"text": "the answer"})
        _, client = gateway_with(lab_config(server), clock=clock)
        session = client.call("sessions.create", {})["id"]
        client.hello(topics=["session.message", "session.error"])
        client.call("sessions.send", {"id": session, "text": "are you there?"})
        server.wait_for_requests(1)  # the turn is under way
        assert client.call("test.crash", {"actor": f"session-{session}"}) == {
            "crashed": f"session-{session}"
        }
        # the manager arms the resume timer as it learns of the crash
        until(lambda: not _live(client, session), "the manager learnt of the crash")
        clock.advance(0.5)  # the first backoff
        answer = answer_of(client, session)
        assert answer["text"] == "the answer" and len(server.wait_for_requests(2)) == 2
        entries = client.call("sessions.get", {"id": session})["entries"]
        assert [(e["role"], e["text"]) for e in entries] == [
            ("user", "are you there?"),
            ("assistant", "the answer"),
        ]


def _live(client: Client, session_id: str) -> bool:
    return bool(
        next(s for s in client.call("sessions.list")["items"] if s["id"] == session_id)["live"]
    )
