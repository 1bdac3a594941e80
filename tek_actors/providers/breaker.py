"""The circuit breaker of one provider: its state, and the pure transitions the ProviderActor
journals (`provider.health`).

    healthy --429--> rate_limited (until max(Retry-After, open time))
    healthy --3 consecutive 5xx/timeouts/connection failures--> open (until now + open time)
    rate_limited/open --until passed--> one trial call; success -> healthy, failure -> open again
    any --401/403/quota/no key--> error (disabled until the provider's configuration changes)

The open time is 60 s, doubling with each consecutive opening up to 15 min.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tek_actors.providers.types import DISABLING, ProviderFailure

__all__ = ["FAILURES_TO_OPEN", "Health", "after_failure", "breaker_state"]

FAILURES_TO_OPEN = 3
OPEN_BASE_S = 60.0
OPEN_CAP_S = 900.0

State = Literal["healthy", "rate_limited", "open", "error"]


class Health(BaseModel):
    state: State = "healthy"
    until: float | None = None  # wall-clock time the breaker may let a trial through
    last_error: str | None = None
    opens: int = 0  # consecutive openings (the open time doubles with each)
    config_fingerprint: str | None = None  # state "error": the configuration that failed


def after_failure(
    health: Health,
    failure: ProviderFailure,
    consecutive: int,
    *,
    trial: bool,
    now: float,
    fingerprint: str | None,
) -> Health | None:
    """The provider's health after `failure` (its `consecutive`-th transient one in a row), or
    None while the breaker stays closed."""
    if failure.kind in DISABLING:
        return Health(state="error", last_error=failure.message, config_fingerprint=fingerprint)
    if not (failure.kind == "rate_limited" or trial or consecutive >= FAILURES_TO_OPEN):
        return None
    open_s = min(OPEN_BASE_S * 2**health.opens, OPEN_CAP_S)
    return Health(
        state="rate_limited" if failure.kind == "rate_limited" else "open",
        until=now + max(failure.retry_after_s or 0.0, open_s),
        last_error=failure.message,
        opens=health.opens + 1,
    )


def breaker_state(health: Health, now: float) -> str:
    """closed states as they are; an open one whose time has passed is `half_open`."""
    if health.state in ("rate_limited", "open"):
        waiting = health.until is not None and now < health.until
        return health.state if waiting else "half_open"
    return health.state
