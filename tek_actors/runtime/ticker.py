"""Periodic work as a supervised child: a `Ticker` is an actor that a clock timer pokes.

An exception in `tick()` is a crash like any other: logged with its traceback, counted, and the
ticker restarted by its supervisor with backoff. Ticks never overlap (they run on the ticker's
own thread, one message at a time) and a slow tick delays the next one rather than piling up.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from tek_actors.runtime.actor import Actor, ActorContext, tell_quietly
from tek_actors.runtime.clock import Timer

__all__ = ["Ticker"]


class _Tick:
    __slots__ = ()


_TICK = _Tick()


class Ticker(Actor):
    """Subclasses define `tick()`; `interval_s` comes from the class or `options['interval_s']`."""

    interval_s: ClassVar[float] = 1.0

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.every = float(ctx.options.get("interval_s", type(self).interval_s))
        self._timer: Timer | None = None
        self.ticks = 0

    def on_begin(self) -> None:
        self._arm()

    def on_end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def reschedule(self, every: float) -> None:
        """Tick every `every` seconds from now on (the pending tick is re-armed)."""
        self.every = every
        if self._timer is not None:
            self._timer.cancel()
            self._arm()

    def _arm(self) -> None:
        ref = self.actor_ref
        self._timer = self.ctx.clock.call_later(self.every, lambda: tell_quietly(ref, _TICK))

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            self.ticks += 1
            self.tick()
            self._arm()
            return None
        return super().on_message(message)

    @abc.abstractmethod
    def tick(self) -> None:
        """The periodic work; runs on the ticker's thread. Raising is a crash (restarted)."""

    def status(self) -> dict[str, Any]:
        return {"ticks": self.ticks}
