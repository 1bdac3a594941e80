"""Waiting for a provider's capacity: a bounded queue served round robin per caller.

A provider runs at most `concurrency` calls at once. A call that finds them all taken waits here
(one queue per provider) instead of failing: a busy provider is not a failing one. Callers (the
sessions, the clients) are served in turn, one call each per round, so a caller with many calls
queued cannot starve one with a single call:

    A1 A2 A3 A4 queued by A, then B1 by B   ->   served A1, B1, A2, A3, A4

The queue is bounded in total (`bound`) and per caller (`per_caller`, a quarter of the bound by
default, so one caller cannot fill it and lock the others out). Pure logic: the ProviderActor
owns one per provider, on its own thread.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

__all__ = ["DEFAULT_BOUND", "FairQueue", "QueueFull", "retry_after_ms"]

T = TypeVar("T")

DEFAULT_BOUND = 256  # calls waiting per provider


class QueueFull(Exception):
    """The queue is at its bound (`per_caller`: at this caller's share of it)."""

    def __init__(self, waiting: int, bound: int, *, per_caller: bool) -> None:
        super().__init__(f"{waiting} calls wait (the bound is {bound})")
        self.waiting, self.bound, self.per_caller = waiting, bound, per_caller


class FairQueue(Generic[T]):
    """Items keyed by a unique `key`, waiting in per-caller lanes served round robin."""

    def __init__(self, bound: int = DEFAULT_BOUND, per_caller: int | None = None) -> None:
        self._lanes: OrderedDict[str, deque[tuple[str, T]]] = OrderedDict()  # next served first
        self._caller_of: dict[str, str] = {}
        self.resize(bound, per_caller)

    def resize(self, bound: int, per_caller: int | None = None) -> None:
        """New bounds; items already waiting stay (a smaller bound refuses only newcomers)."""
        self.bound = max(0, bound)
        self.per_caller = max(1, self.bound // 4) if per_caller is None else max(1, per_caller)

    def __len__(self) -> int:
        return len(self._caller_of)

    def __contains__(self, key: object) -> bool:
        return key in self._caller_of

    def waiting_for(self, caller: str) -> int:
        lane = self._lanes.get(caller)
        return len(lane) if lane is not None else 0

    def push(self, caller: str, key: str, item: T) -> int:
        """Queue `item` behind `caller`'s earlier ones; its 1-based position. QueueFull at the
        bound. A caller with nothing waiting joins the end of the round."""
        if key in self._caller_of:
            raise ValueError(f"{key!r} is already waiting")
        if len(self) >= self.bound:
            raise QueueFull(len(self), self.bound, per_caller=False)
        if self.waiting_for(caller) >= self.per_caller:
            raise QueueFull(self.waiting_for(caller), self.per_caller, per_caller=True)
        self._lanes.setdefault(caller, deque()).append((key, item))
        self._caller_of[key] = caller
        position = self.position(key)
        assert position is not None
        return position

    def pop(self) -> T | None:
        """The next item in turn (None if nothing waits); its caller moves to the end."""
        if not self._lanes:
            return None
        caller, lane = next(iter(self._lanes.items()))
        key, item = lane.popleft()
        del self._caller_of[key]
        if lane:
            self._lanes.move_to_end(caller)
        else:
            del self._lanes[caller]
        return item

    def remove(self, key: str) -> T | None:
        """Take `key` out of the queue (its deadline passed); None if it is not waiting."""
        caller = self._caller_of.pop(key, None)
        if caller is None:
            return None
        lane = self._lanes[caller]
        index = next(i for i, (k, _) in enumerate(lane) if k == key)
        item = lane[index][1]
        del lane[index]
        if not lane:
            del self._lanes[caller]
        return item

    def position(self, key: str) -> int | None:
        """1-based: how many pops until `key` comes out, if nothing else joins before it."""
        caller = self._caller_of.get(key)
        if caller is None:
            return None
        order = list(self._lanes)
        slot = order.index(caller)
        depth = next(i for i, (k, _) in enumerate(self._lanes[caller]) if k == key)
        # Served in round `depth` at `slot`: every lane serves one item per round.
        ahead = sum(
            min(len(self._lanes[other]), depth + (1 if j < slot else 0))
            for j, other in enumerate(order)
            if other != caller
        )
        return ahead + depth + 1

    def order(self) -> list[str]:
        """Every waiting key, in the order they would be served."""
        lanes = [list(lane) for lane in self._lanes.values()]
        out: list[str] = []
        for depth in range(max((len(lane) for lane in lanes), default=0)):
            out.extend(lane[depth][0] for lane in lanes if depth < len(lane))
        return out


def retry_after_ms(mean_call_s: float | None, waiting: int, capacity: int) -> int:
    """When a caller refused by a full queue may try again: about when the calls ahead of it
    have gone through (waiting / capacity calls in a row), between 1 s and 60 s."""
    per_call = mean_call_s if mean_call_s is not None else 1.0
    estimate = per_call * (waiting + 1) / max(1, capacity)
    return int(min(60.0, max(1.0, estimate)) * 1000)
