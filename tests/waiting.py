"""Waiting for what another thread does, in tests.

Wait on an event or a future where there is one (`Event.wait`, `future.result`,
`client.next_event`, a FakeClock's timers). Where there is none (state an actor changes on its
own thread, seen only by asking it), ask again until a deadline in seconds: every ask is a round
trip that waits on its own reply, and the bound is time, never a count of tries (whose length
depends on the machine's speed and load)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tek_actors import Client

__all__ = ["DEFAULT_TIMEOUT_S", "events_until", "until"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 20.0  # far above what a loaded CI machine needs; well under pytest's 120 s


def until(shown: Callable[[], T], what: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> T:
    """Call `shown()` until it returns something true, and return that; AssertionError naming
    `what` (and the last value) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = shown()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"never happened within {timeout:.0f} s: {what} (last: {value!r})")


def events_until(
    client: Client, last: Callable[[dict[str, Any]], bool], *, timeout: float = DEFAULT_TIMEOUT_S
) -> list[dict[str, Any]]:
    """The events `client` delivers, up to and including the first for which `last(event)` is
    true; each waited for (never "until none came for a while", which a slow machine fakes)."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while True:
        event = client.next_event(max(0.0, deadline - time.monotonic()))
        assert event is not None, f"the awaited event never came; saw {[e['event'] for e in seen]}"
        seen.append(event)
        if last(event):
            return seen
