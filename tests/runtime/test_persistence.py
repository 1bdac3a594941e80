"""Event-sourced actors: durable then applied, snapshots every N, fallback to the older one."""

from __future__ import annotations

from typing import Any

import msgpack

from tek_actors.runtime import SnapshotNow


def test_state_is_rebuilt_from_snapshot_plus_journal(make_tree: Any) -> None:
    tree = make_tree()
    for n in range(1, 8):  # snapshot_every = 3: snapshots at 3 and 6 events, then one more event
        tree.ask("counter", "counter.add", {"n": n})
    tree.journal.append("barrier", []).result(5)  # the writer is FIFO: earlier snapshots are in
    assert [seq for seq, _ in tree.journal.load_snapshots("counter")] == [6, 3]
    tree.crash("counter")
    tree.settle(0.5)
    assert tree.ask("counter", "counter.get")[1] == {"total": 28, "seq": 7}


def test_a_snapshot_that_will_not_load_falls_back_to_the_older_one(make_tree: Any) -> None:
    tree = make_tree()
    for n in range(1, 7):
        tree.ask("counter", "counter.add", {"n": n})
    tree.directory.lookup("counter").ask(SnapshotNow(), timeout=5)  # waits for the write
    (newest, _), (older, _) = tree.journal.load_snapshots("counter")
    assert (newest, older) == (6, 3)
    tree.journal.save_snapshot("counter", newest, b"\xc1 not msgpack").result(5)
    tree.crash("counter")
    tree.settle(0.5)
    assert tree.ask("counter", "counter.get")[1] == {"total": 21, "seq": 6}


def test_events_carry_the_actor_and_the_idem_reply_is_recorded_atomically(make_tree: Any) -> None:
    from tek_actors.runtime import Ticket

    tree = make_tree()
    answers: list[Any] = []
    import threading

    done = threading.Event()

    def respond(ticket: Ticket, ok: bool, value: Any) -> None:
        answers.append((ok, value))
        done.set()

    ref = tree.directory.lookup("counter")
    ref.tell(Ticket("counter.add", {"n": 9}, respond, idem="k-9", idem_digest=b"dg"))
    assert done.wait(5)
    record = tree.journal.idem_lookup("k-9")
    assert record is not None and record.digest == b"dg"
    assert msgpack.unpackb(record.reply) == answers[0][1] == {"total": 9}
    assert [e.actor for e in tree.journal.read_since(0)] == ["counter"]


def test_a_cancelled_ticket_never_runs(make_tree: Any) -> None:
    from tek_actors.runtime import Ticket

    tree = make_tree()
    ticket = Ticket("counter.add", {"n": 1}, lambda *a: None)
    assert ticket.cancel()
    tree.directory.lookup("counter").tell(ticket)
    assert tree.ask("counter", "counter.get")[1]["total"] == 0
    assert not ticket.claim()
