"""The intent log (runtime/effects.py): pure folding of effect.intended / effect.settled."""

from __future__ import annotations

import random

import pytest

from tek_actors.runtime import effects
from tek_actors.runtime.effects import IntentLog, apply_effect, intended, settled
from tek_actors.store import NewEvent


def _fold(events: list[NewEvent]) -> IntentLog:
    log = IntentLog()
    for event in events:
        log = apply_effect(log, event)
    return log


def test_a_key_binds_until_its_effect_provably_did_not_happen() -> None:
    log = _fold([intended("i1", "proc.spawn", {"argv": ["true"]}, key="k", boot="b", at=1.0)])
    assert log.find("k") is not None and log.find("k").status == "pending"  # type: ignore[union-attr]
    assert [i.id for i in log.pending()] == ["i1"]
    freed = apply_effect(log, settled("i1", "not_started"))
    assert freed.find("k") is None and freed.pending() == []  # a resend does it, first time
    again = apply_effect(freed, intended("i2", "proc.spawn", {}, key="k", boot="b", at=2.0))
    done = apply_effect(again, settled("i2", "done", {"id": "p"}))
    assert done.find("k").outcome == {"id": "p"}  # type: ignore[union-attr]
    assert apply_effect(done, settled("i2", "unknown")).find("k").status == "unknown"  # type: ignore[union-attr]
    assert done.find(None) is None


def test_other_events_and_unknown_ids_change_nothing() -> None:
    log = _fold([intended("i1", "file.write", {}, key=None, boot="b", at=1.0)])
    assert apply_effect(log, NewEvent("proc.started", {"id": "i1"})) is log
    assert apply_effect(log, settled("nope", "done")) is log
    assert log.by_key == {}


@pytest.mark.parametrize("seed", range(20))
def test_random_histories_keep_every_pending_intent_and_the_newest_binding_per_key(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(effects, "KEEP_SETTLED", 7)  # so pruning is exercised too
    rng = random.Random(seed)
    events: list[NewEvent] = []
    model: dict[str, tuple[str, str]] = {}  # id -> (key, status)
    order: list[str] = []
    for n in range(rng.randint(1, 80)):
        pending = [i for i, (_, st) in model.items() if st == "pending"]
        if pending and rng.random() < 0.5:
            target = rng.choice(pending)
            status = rng.choice(["done", "failed", "not_started", "unknown"])
            events.append(settled(target, status))  # type: ignore[arg-type]
            model[target] = (model[target][0], status)
        else:
            key = f"k{rng.randint(0, 5)}"
            events.append(intended(f"i{n}", "x", {}, key=key, boot="b", at=float(n)))
            model[f"i{n}"] = (key, "pending")
            order.append(f"i{n}")
    log = _fold(events)
    assert {i.id for i in log.pending()} == {i for i, (_, st) in model.items() if st == "pending"}
    assert sum(1 for i in log.items.values() if i.status != "pending") <= 7
    for key in {k for k, _ in model.values()}:
        newest = next(i for i in reversed(order) if model[i][0] == key)
        found = log.find(key)
        if model[newest][1] in ("failed", "not_started") or newest not in log.items:
            assert found is None  # free, or forgotten past KEEP_SETTLED
        else:
            assert found is not None and found.id == newest
