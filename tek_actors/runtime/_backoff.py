"""Restart backoff and restart intensity, the two numbers a supervisor lives by."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

__all__ = ["Backoff", "Intensity", "RestartWindow"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restart `attempt` (0-based): initial * factor**attempt, capped, jittered."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        spread = base * self.jitter
        return max(0.0, base + rng.uniform(-spread, spread))


@dataclass(frozen=True, slots=True)
class Intensity:
    """At most `max_restarts` restarts within any `window_s` seconds, or escalate."""

    max_restarts: int = 5
    window_s: float = 30.0


class RestartWindow:
    """The restarts of one child (or of the whole tree) inside the intensity window."""

    def __init__(self, intensity: Intensity) -> None:
        self.intensity = intensity
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count a restart at `now`; False when that exceeds the intensity (escalate)."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.intensity.window_s:
            self._times.popleft()
        return len(self._times) <= self.intensity.max_restarts

    def clear(self) -> None:
        self._times.clear()
