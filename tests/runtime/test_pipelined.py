"""persist_async: commands validated against pending state, answered in order once durable.

The journal's writer is held at its `BEGIN IMMEDIATE` by a second connection that holds the
write lock (SQLite's busy wait, 5 s), so that every command below is handled while the ones
before it are still pending: what is tested is the pipelined path, not a lucky fast commit.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tek_actors.runtime import StatusQuery, Strategy
from tests.runtime.conftest import Tree
from tests.store.test_disk_trouble import tmpfs
from tests.waiting import until


@contextlib.contextmanager
def writer_held(path: Path) -> Iterator[None]:
    """The journal at `path` cannot commit until this block ends (the writer waits)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def pending(tree: Tree, name: str) -> int:
    ref = tree.directory.lookup(name)
    assert ref is not None
    return int(ref.ask(StatusQuery(), timeout=5)["pending"])


def sequentially(requests: list[tuple[str, dict[str, Any]]], total: int) -> list[Any]:
    """What each request gets when run one at a time (the model the actor must match)."""
    answers: list[Any] = []
    for type_name, payload in requests:
        n = payload["n"]
        if type_name == "ledger.take" and total < n:
            answers.append(("conflict", total))
            continue
        total += n if type_name == "ledger.give" else -n
        answers.append(("ok", total))
    return answers


def shown(answers: list[tuple[int, bool, Any]]) -> list[Any]:
    return [
        ("ok", v["total"]) if ok else (v.code, (v.details or {}).get("total"))
        for _, ok, v in answers
    ]


def test_commands_on_pending_state_are_refused_and_accepted_as_one_by_one(make_tree: Any) -> None:
    rng = random.Random(14_5)
    tree = make_tree()
    requests = [
        (rng.choice(["ledger.give", "ledger.take", "ledger.take"]), {"n": rng.randint(1, 9)})
        for _ in range(60)
    ]
    expected = sequentially(requests, 0)
    accepted = sum(1 for a in expected if a[0] == "ok")
    first_give = next(i for i, (t, _) in enumerate(requests) if t == "ledger.give")
    with writer_held(tree.path):  # the writer waits at most 5 s for it: be quick in here
        answers = tree.send("ledger", requests)
        wanted = len(requests) - first_give  # before the first give, nothing was pending
        until(lambda: pending(tree, "ledger") == wanted, "every command pending", timeout=4)
        assert [i for i, _, _ in answers.got] == list(range(first_give))  # nothing durable
        # A read waits for what is pending: a client may have seen the events of these by the
        # time it asks, and must then find them (it is answered after them, with them).
        peek = tree.send("ledger", [("ledger.peek", {})])
        assert peek.got == []
    got = answers.wait(len(requests))
    assert [i for i, _, _ in got] == list(range(len(requests)))  # in order
    assert shown(got) == expected
    events = tree.journal.read_since(0, actor="ledger")
    assert len(events) == accepted
    final = expected[-1][1]  # a refusal carries the total it saw, too
    assert peek.wait(1)[0][2]["total"] == final
    assert tree.ask("ledger", "ledger.get")[1]["total"] == final
    tree.crash("ledger")
    tree.settle(0.5)
    assert tree.ask("ledger", "ledger.get")[1] == {"total": final, "seq": events[-1].seq}


def test_a_plain_command_waits_for_the_pending_ones_and_sees_them(make_tree: Any) -> None:
    tree = make_tree()
    with writer_held(tree.path):
        gives = tree.send("ledger", [("ledger.give", {"n": 5})] * 3)
        until(lambda: pending(tree, "ledger") == 3, "the gives pending", timeout=4)
        got = tree.send("ledger", [("ledger.get", {})])  # the actor waits here, blocked
    assert [i for i, _, _ in gives.wait(3)] == [0, 1, 2]
    assert got.wait(1)[0][2]["total"] == 15


def test_a_full_disk_answers_every_pending_command_unavailable(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        spare = disk / "spare"
        spare.write_bytes(b"s" * 512 * 1024)  # freed later: room again
        tree = Tree(disk / "j.db", Strategy.ONE_FOR_ONE)
        try:
            _refused_while_pending(tree, spare)
        finally:
            tree.close()


def _refused_while_pending(tree: Tree, spare: Path) -> None:
    durable = 0
    while True:  # fill the disk with durable gives
        ok, value = tree.ask("ledger", "ledger.give", {"n": 1, "pad": 32768})
        if not ok:
            assert value.code == "unavailable"
            break
        durable = value["total"]
    assert durable > 0
    requests = [
        ("ledger.give", {"n": 100, "pad": 32768}),
        ("ledger.take", {"n": durable + 50}),  # accepted only on the pending give
        ("ledger.take", {"n": durable + 500}),  # refused, against the pending state
        ("ledger.give", {"n": 1, "pad": 32768}),
    ]
    with writer_held(tree.path):
        answers = tree.send("ledger", requests)
        wanted = len(requests)
        until(lambda: pending(tree, "ledger") == wanted, "every command pending", timeout=4)
    got = answers.wait(len(requests))
    assert [(i, ok, v.code) for i, ok, v in got] == [
        (i, False, "unavailable") for i in range(len(requests))
    ]
    assert tree.ask("ledger", "ledger.get")[1]["total"] == durable
    spare.unlink()
    # As if the refused commands had never come: the take is now short.
    ok, value = tree.ask("ledger", "ledger.take", {"n": durable + 50})
    assert not ok and value.code == "conflict" and value.details == {"total": durable}
    assert tree.ask("ledger", "ledger.take", {"n": durable}) == (True, {"total": 0})
    assert tree.restarted == []  # answered, never a crash
    events = tree.journal.read_since(0, actor="ledger")
    assert [e.type for e in events] == ["ledger.given"] * durable + ["ledger.taken"]
