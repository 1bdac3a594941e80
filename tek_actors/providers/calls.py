"""One model call on its way through the ProviderActor, the messages that move it along, and the
errors it ends with when no model of its chain could answer.

A call that ends in error ends with one that says what happened, never just a state name:
a provider at capacity whose queue is full is `overloaded` (with when to come back), a call whose
deadline passed while it waited for capacity is `timeout` (it was never sent), a failure that is
the caller's is `invalid_value`, and a chain with nothing left to try is `rate_limited` or
`unavailable`, naming for each alias what failed or which breaker stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pykka

from tek_actors.errors import (
    InvalidValue,
    Overloaded,
    RateLimited,
    RequestTimeout,
    TekError,
    Unavailable,
)
from tek_actors.providers.admission import QueueFull
from tek_actors.providers.breaker import Key
from tek_actors.providers.runtime import ProviderRuntime
from tek_actors.providers.types import Completion, ModelRequest, ProviderFailure
from tek_actors.runtime import Ticket
from tek_actors.runtime.clock import Timer

__all__ = [
    "AttemptDone",
    "Call",
    "Retry",
    "WaitExpired",
    "blocked_reason",
    "caller_fault",
    "exhausted",
    "queue_full",
    "waited_too_long",
]


@dataclass
class Call:
    id: str
    chain: list[str]
    request: ModelRequest
    caller: str  # whose turn it is in a provider's queue: a session, a client, or itself
    deadline: float = 0.0  # clock.monotonic() past which it no longer waits for capacity
    session: str | None = None  # the session it is for, named in provider.waiting
    ticket: Ticket | None = None
    reply_to: pykka.ActorRef[Any] | None = None
    stream: bool = False
    index: int = 0
    round: int = 0
    attempt: int = 0
    tried: list[str] = field(default_factory=list)
    failures: dict[str, ProviderFailure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # alias -> the breaker that stopped it
    in_flight: str | None = None  # the provider of the current attempt
    runtime: ProviderRuntime | None = None  # ... the runtime it went to
    model_id: str = ""  # ... and the model
    attempt_started: float = 0.0  # clock.monotonic() when it was dispatched
    trials: tuple[Key, ...] = ()  # the half-open breakers the current attempt is the trial of
    probe: bool = False  # providers.test: no failover, no effect on the breakers
    started_at: float = 0.0
    waiting_on: str | None = None  # the provider whose admission queue it is in
    waits: int = 0  # how many times it queued (tells a stale expiry timer from a live one)
    wait_timer: Timer | None = None
    waited_since: float | None = None
    waited_s: float = 0.0  # in admission queues, in all


class AttemptDone:
    __slots__ = ("attempt", "call_id", "completion", "failure", "stale")

    def __init__(
        self,
        call_id: str,
        attempt: int,
        completion: Completion | None,
        failure: ProviderFailure | None,
        *,
        stale: bool = False,
    ) -> None:
        self.call_id, self.attempt = call_id, attempt
        self.completion, self.failure, self.stale = completion, failure, stale


@dataclass(frozen=True, slots=True)
class Retry:
    call_id: str


@dataclass(frozen=True, slots=True)
class WaitExpired:
    call_id: str
    waits: int


def caller_fault(failure: ProviderFailure) -> TekError:
    details = {"path": "messages", "expected": "a request the model accepts"}
    details |= failure.describe()
    return InvalidValue(failure.message, details=details)


def queue_full(provider: str, full: QueueFull, capacity: int, retry_ms: int) -> Overloaded:
    if full.per_caller:
        what = f"this caller already has {full.waiting} waiting, its share of the queue"
    else:
        what = f"{full.waiting} calls are waiting, the most its queue holds"
    return Overloaded(
        f"{provider} is at capacity (concurrency {capacity}) and {what}; try again in about "
        f"{retry_ms / 1000:.0f} s",
        retry_after_ms=retry_ms,
        details={
            "provider": provider,
            "capacity": capacity,
            "waiting": full.waiting,
            "bound": full.bound,
            "per_caller": full.per_caller,
        },
    )


def waited_too_long(
    call: Call, provider: str, capacity: int, position: int | None, waiting: int
) -> RequestTimeout:
    where = f" at position {position} of {waiting}" if position is not None else ""
    return RequestTimeout(
        f"the call waited {call.waited_s:.1f} s for capacity on {provider} (concurrency "
        f"{capacity}, all taken){where} and its deadline passed; it was never sent",
        details={
            "provider": provider,
            "waited_ms": int(call.waited_s * 1000),
            "position": position,
            "capacity": capacity,
            "started": False,
            # It waited as long as its deadline allows: a resend would only wait again.
            "retryable": False,
        },
    )


def exhausted(
    call: Call,
    targets: list[tuple[str, str, str]],
    entries: dict[str, dict[str, Any]],
    now: float,
) -> TekError:
    """Nothing of the chain could answer. `targets`: (alias, provider, model id) of each alias;
    `entries`: each provider as providers.status shows it, its models included."""
    waits: list[float] = []
    states: set[str] = set()
    parts = []
    for alias, provider, model_id in targets:
        entry = entries[provider]
        levels = [entry, entry.get("models", {}).get(model_id, {})]
        waits += [level["until"] - now for level in levels if level.get("until")]
        states.add(next((lv["state"] for lv in levels if lv.get("state") != "healthy"), "healthy"))
        failure = call.failures.get(alias)
        if failure is not None:
            why = failure.message
            blocked = next((lv for lv in levels if lv.get("state") not in (None, "healthy")), None)
            if blocked is not None:
                why += f"; now {blocked['state']}" + _back_in(blocked.get("until"), now)
        else:
            why = call.skipped.get(alias, f"{provider} was not tried")
        parts.append(f"{alias} ({why})")
    future = [w for w in waits if w > 0]
    retry_ms = max(1000, int(min(future) * 1000)) if future else 5000
    message = f"no model in the chain {call.chain} could answer: " + "; ".join(parts)
    # The gateway already retried as far as it helps: a client should not resend at once.
    details: dict[str, Any] = {"providers": entries, "chain": call.chain, "tried": call.tried}
    details |= {"skipped": call.skipped, "retryable": False}
    for alias, provider, model_id in targets:
        failure = call.failures.get(alias)
        if failure is not None:
            entries[provider].setdefault("failure", failure.describe())  # the first, as before
            entries[provider].get("models", {}).get(model_id, {})["failure"] = failure.describe()
    if states == {"rate_limited"} or any(f.kind == "rate_limited" for f in call.failures.values()):
        return RateLimited(message, retry_after_ms=retry_ms, details=details)
    return Unavailable(message, retry_after_ms=retry_ms, details=details)


def _back_in(until: float | None, now: float) -> str:
    return f", back in {max(0.0, until - now):.0f} s" if until else ""


def blocked_reason(
    who: str, state: str, until: float | None, last_error: str | None, now: float, *, trialing: bool
) -> str:
    """Why a breaker stops calls, for an error message."""
    if trialing:
        return f"{who} is half-open and its one trial call is in flight"
    if state == "error":
        return f"{who} is disabled until its configuration changes: {last_error or 'unknown'}"
    return f"{who} is {state}{_back_in(until, now)}" + (f": {last_error}" if last_error else "")
