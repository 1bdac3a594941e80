"""The admission queue (providers/admission.py): callers served in turn, positions that tell the
truth, and the bounds."""

from __future__ import annotations

import random

import pytest

from tek_actors.providers.admission import FairQueue, QueueFull, retry_after_ms


def drain(queue: FairQueue[str]) -> list[str]:
    served = []
    while (item := queue.pop()) is not None:
        served.append(item)
    return served


def test_callers_are_served_in_turn_so_one_with_many_calls_starves_nobody() -> None:
    queue: FairQueue[str] = FairQueue(bound=100, per_caller=100)
    for n in range(1, 6):
        queue.push("session-a", f"a{n}", f"a{n}")
    queue.push("session-b", "b1", "b1")
    queue.push("session-c", "c1", "c1")
    assert drain(queue) == ["a1", "b1", "c1", "a2", "a3", "a4", "a5"]


def test_a_caller_served_goes_to_the_end_of_the_round() -> None:
    queue: FairQueue[str] = FairQueue(bound=100, per_caller=100)
    queue.push("a", "a1", "a1")
    queue.push("a", "a2", "a2")
    queue.push("b", "b1", "b1")
    assert queue.pop() == "a1"
    queue.push("c", "c1", "c1")  # joins after b and a, who were waiting already
    queue.push("b", "b2", "b2")
    assert drain(queue) == ["b1", "a2", "c1", "b2"]


def test_a_caller_that_comes_back_after_its_lane_emptied_waits_its_turn() -> None:
    queue: FairQueue[str] = FairQueue(bound=100, per_caller=100)
    queue.push("a", "a1", "a1")
    queue.push("b", "b1", "b1")
    assert queue.pop() == "a1"
    queue.push("a", "a2", "a2")  # a has nothing waiting: it joins the end
    assert drain(queue) == ["b1", "a2"]


def test_positions_are_the_order_of_service() -> None:
    rng = random.Random(7)
    for _ in range(200):
        queue: FairQueue[str] = FairQueue(bound=1000, per_caller=1000)
        for n in range(rng.randint(0, 30)):
            if len(queue) and rng.random() < 0.3:
                queue.pop()
            caller = rng.choice("abcde")
            queue.push(caller, f"{caller}{n}", f"{caller}{n}")
        order = queue.order()
        assert [queue.position(key) for key in order] == list(range(1, len(order) + 1))
        assert drain(queue) == order


def test_push_tells_the_position_and_remove_takes_one_out() -> None:
    queue: FairQueue[str] = FairQueue(bound=10, per_caller=10)
    assert queue.push("a", "a1", "a1") == 1
    assert queue.push("a", "a2", "a2") == 2
    assert queue.push("b", "b1", "b1") == 2  # b is served before a's second call
    assert queue.position("a2") == 3
    assert queue.remove("b1") == "b1" and queue.remove("b1") is None
    assert queue.position("a2") == 2 and "b1" not in queue and len(queue) == 2
    with pytest.raises(ValueError, match="already waiting"):
        queue.push("a", "a1", "again")


def test_the_queue_is_bounded_in_all_and_per_caller() -> None:
    queue: FairQueue[str] = FairQueue(bound=4)  # a quarter each: one call per caller
    queue.push("a", "a1", "a1")
    with pytest.raises(QueueFull) as per_caller:
        queue.push("a", "a2", "a2")
    assert per_caller.value.per_caller and per_caller.value.bound == 1
    for caller in "bcd":
        queue.push(caller, f"{caller}1", f"{caller}1")
    with pytest.raises(QueueFull) as full:
        queue.push("e", "e1", "e1")
    assert not full.value.per_caller and full.value.waiting == 4 and full.value.bound == 4
    assert queue.pop() == "a1"
    queue.push("e", "e1", "e1")  # room again


def test_a_smaller_bound_keeps_who_waits_and_refuses_newcomers() -> None:
    queue: FairQueue[str] = FairQueue(bound=8, per_caller=8)
    for n in range(3):
        queue.push("a", f"a{n}", f"a{n}")
    queue.resize(2, 2)
    assert len(queue) == 3
    with pytest.raises(QueueFull):
        queue.push("b", "b1", "b1")
    assert drain(queue) == ["a0", "a1", "a2"]


def test_retry_after_is_about_when_the_calls_ahead_went_through() -> None:
    assert retry_after_ms(None, 0, 1) == 1000  # nothing known: a second
    assert retry_after_ms(2.0, 9, 4) == 5000  # 10 calls on 4 workers of 2 s each
    assert retry_after_ms(30.0, 100, 1) == 60_000  # capped
    assert retry_after_ms(0.001, 3, 8) == 1000  # floored
