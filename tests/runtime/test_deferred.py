"""Commands that answer later (defer/after/answer), timers that die with their actor, and
telling other actors by name."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pykka

from tek_actors.errors import Internal
from tek_actors.runtime import Ticket


def _submit(
    tree: Any, name: str, type_name: str, payload: dict[str, Any], idem: str | None = None
) -> tuple[threading.Event, list[Any]]:
    done, answer = threading.Event(), []

    def respond(ticket: Ticket, ok: bool, value: Any) -> None:
        answer.append((ok, value))
        done.set()

    tree.directory.lookup(name).tell(
        Ticket(type_name, payload, respond, idem=idem, idem_digest=b"d" if idem else None)
    )
    return done, answer


def test_a_deferred_command_answers_when_its_timer_fires(make_tree: Any) -> None:
    tree = make_tree()
    done, answer = _submit(
        tree, "waiter", "waiter.add_later", {"n": 4, "delay_s": 2.0}, idem="later-1"
    )
    tree.ask("waiter", "waiter.get")  # the command ran (and deferred) before this answers
    assert not done.is_set()
    tree.clock.advance(1.9)
    assert not done.is_set()
    tree.clock.advance(0.1)
    assert done.wait(5) and answer == [(True, {"total": 4})]
    record = tree.journal.idem_lookup("later-1")  # recorded with the deferred request's event
    assert record is not None and msgpack.unpackb(record.reply) == {"total": 4}


def test_a_crash_answers_every_deferred_request_and_cancels_its_timers(make_tree: Any) -> None:
    tree = make_tree()
    done, answer = _submit(tree, "waiter", "waiter.add_later", {"n": 1, "delay_s": 5.0})
    tree.ask("waiter", "waiter.get")
    tree.crash("waiter")
    assert done.wait(5)
    ok, error = answer[0]
    assert not ok and isinstance(error, Internal)
    assert tree.clock.pending() == 1  # only the supervisor's restart timer is left
    tree.settle(0.5)
    tree.clock.advance(10.0)  # the old incarnation's timer never fires into the new one
    assert tree.ask("waiter", "waiter.get") == (True, {"total": 0})


def test_send_reaches_the_current_incarnation_by_name(make_tree: Any) -> None:
    tree = make_tree()
    assert tree.ask("waiter", "waiter.poke", {"name": "counter"}) == (True, True)
    assert tree.ask("waiter", "waiter.poke", {"name": "nobody"}) == (True, False)
    tree.crash("counter")
    assert tree.ask("waiter", "waiter.poke", {"name": "counter"}) == (True, False)  # restarting
    tree.settle(0.5)
    assert tree.ask("waiter", "waiter.poke", {"name": "counter"}) == (True, True)


def test_a_request_to_another_actor_is_answered_on_the_askers_thread(make_tree: Any) -> None:
    tree = make_tree()
    relay = {"name": "counter", "type": "counter.add", "payload": {"n": 2}}
    assert tree.ask("waiter", "waiter.relay", relay) == (True, {"ok": True, "value": {"total": 2}})
    refused = {"name": "counter", "type": "counter.add", "payload": {"n": 0}}
    assert tree.ask("waiter", "waiter.relay", refused) == (
        True,
        {"ok": False, "code": "not_found", "started": None},  # it ran, and said no
    )


def test_a_request_nobody_takes_up_is_cancelled_and_says_it_never_started(
    make_tree: Any,
) -> None:
    tree = make_tree()
    nobody = {"name": "nobody", "type": "counter.add", "payload": {"n": 1}}
    assert tree.ask("waiter", "waiter.relay", nobody) == (
        True,
        {"ok": False, "code": "unavailable", "started": False},
    )

    class Sink(pykka.ThreadingActor):
        """Takes every message and claims none (an actor that died with them in its inbox)."""

        def on_receive(self, message: Any) -> None:
            taken.append(message)
            took.set()

    taken: list[Any] = []
    took = threading.Event()  # the Sink runs on its own thread: wait for it, never assume
    sink = Sink.start()
    try:
        tree.directory._declare("sink", "")
        tree.directory._up("sink", sink)
        done, answer = _submit(
            tree, "waiter", "waiter.relay", {"name": "sink", "type": "counter.add"}
        )
        tree.ask("waiter", "waiter.get")  # the relay is out, its claim timer armed
        assert not done.is_set()
        tree.clock.advance(5.0)
        assert done.wait(5)
        assert answer == [(True, {"ok": False, "code": "unavailable", "started": False})]
        assert took.wait(5), "the relayed request never reached the sink"
        [ticket] = taken
        assert not ticket.claim()  # cancelled: it can never start now
    finally:
        sink.stop()
