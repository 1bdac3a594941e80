"""The calls waiting for their provider's capacity: one fair queue per provider (admission.py),
each call's deadline timer, and the events that show the wait.

    provider.waiting  {call_id, session, provider, model, position, waiting, capacity}
                      ephemeral, when a call joins a queue (`position` 1 is served next)
    provider.admitted {call_id, session, provider, waited_ms}
                      ephemeral, when it leaves it for a free worker

Owned by the ProviderActor and used on its thread only: the actor says when a worker is free
(`next_for`) and what becomes of a call that comes out, or whose deadline passed (`expire`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tek_actors.errors import TekError
from tek_actors.providers.admission import DEFAULT_BOUND, FairQueue, QueueFull, retry_after_ms
from tek_actors.providers.calls import Call, WaitExpired, queue_full, waited_too_long
from tek_actors.runtime.clock import Clock, Timer

__all__ = ["WaitingRoom"]

CALL_TIME_WEIGHT = 0.2  # of the newest call in a provider's smoothed call time


class WaitingRoom:
    def __init__(
        self,
        clock: Clock,
        after: Callable[[float, Any], Timer],
        publish: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self._clock, self._after, self._publish = clock, after, publish
        self._queues: dict[str, FairQueue[Call]] = {}
        self._call_s: dict[str, float] = {}  # per provider: smoothed seconds per call

    def resize(self, provider: str, bound: int) -> None:
        self._queue(provider).resize(bound)

    def waiting(self, provider: str) -> int:
        queue = self._queues.get(provider)
        return len(queue) if queue is not None else 0

    def providers(self) -> list[str]:
        """Every provider with a queue (some may be empty)."""
        return list(self._queues)

    def forget(self, provider: str) -> None:
        """A provider gone from the configuration, once its queue has drained."""
        if not self.waiting(provider):
            self._queues.pop(provider, None)
            self._call_s.pop(provider, None)

    def timed(self, provider: str, seconds: float) -> None:
        """A call on `provider` took `seconds` (for the retry_after_ms of a full queue)."""
        old = self._call_s.get(provider)
        smoothed = seconds if old is None else old + (seconds - old) * CALL_TIME_WEIGHT
        self._call_s[provider] = smoothed

    def enter(self, call: Call, provider: str, capacity: int) -> TekError | None:
        """Queue `call` for `provider`'s next free worker until its deadline; or the error it
        ends with at once (its deadline has passed, or the queue is full)."""
        queue = self._queue(provider)
        now = self._clock.monotonic()
        if now >= call.deadline:
            return waited_too_long(call, provider, capacity, None, len(queue))
        try:
            position = queue.push(call.caller, call.id, call)
        except QueueFull as full:
            retry = retry_after_ms(self._call_s.get(provider), len(queue), capacity)
            return queue_full(provider, full, capacity, retry)
        call.waiting_on, call.waited_since = provider, now
        call.waits += 1
        call.wait_timer = self._after(call.deadline - now, WaitExpired(call.id, call.waits))
        self._publish(
            "provider.waiting",
            {
                "call_id": call.id,
                "session": call.session,
                "provider": provider,
                "model": call.chain[call.index],
                "position": position,
                "waiting": len(queue),
                "capacity": capacity,
            },
        )
        return None

    def next_for(self, provider: str) -> Call | None:
        """The call whose turn it is on `provider` (a worker is free for it), out of the queue."""
        queue = self._queues.get(provider)
        call = queue.pop() if queue is not None else None
        if call is None:
            return None
        self._left(call)
        self._publish(
            "provider.admitted",
            {
                "call_id": call.id,
                "session": call.session,
                "provider": provider,
                "waited_ms": int(call.waited_s * 1000),
            },
        )
        return call

    def expire(self, call: Call, expired: WaitExpired, capacity: int) -> TekError | None:
        """The deadline timer of `call` fired: the `timeout` it ends with, or None if the timer
        is stale (the call left the queue before it fired)."""
        provider = call.waiting_on
        if provider is None or call.waits != expired.waits:
            return None
        queue = self._queue(provider)
        position, waiting = queue.position(call.id), len(queue)
        self.leave(call)
        return waited_too_long(call, provider, capacity, position, waiting)

    def leave(self, call: Call) -> None:
        """Take `call` out of whatever queue it is in (it ends another way)."""
        if call.waiting_on is not None:
            self._queue(call.waiting_on).remove(call.id)
            self._left(call)

    def _left(self, call: Call) -> None:
        if call.wait_timer is not None:
            call.wait_timer.cancel()
        if call.waited_since is not None:
            call.waited_s += self._clock.monotonic() - call.waited_since
        call.waiting_on, call.waited_since, call.wait_timer = None, None, None

    def _queue(self, provider: str) -> FairQueue[Call]:
        queue = self._queues.get(provider)
        if queue is None:
            queue = self._queues[provider] = FairQueue(DEFAULT_BOUND)
        return queue
