"""The circuit breakers: one per provider and one per model of a provider, their states, and the
pure transitions the ProviderActor journals (`provider.health`).

    healthy --429--> rate_limited (until max(Retry-After, open time))
    healthy --3 consecutive 5xx/timeouts/connection failures--> open (until now + open time)
    healthy --the provider does not serve the model--> open at once
    rate_limited/open --until passed--> one trial call; success -> healthy, failure -> open again
    any --401/403/quota/no key--> error (disabled until the provider's configuration changes)

What failed picks the breaker (`ProviderFailure.scope`). A 429, an overload, a reply too slow or
an unknown model belongs to one model of the provider (a proxy, a router or a multi-model server
answers for each model on its own): it moves the breaker of (provider, model), and the
provider's other models are still tried. A server that cannot be reached, a key it refuses, a
5xx belongs to the provider: it moves the provider's breaker, which stops all its models. A call
goes through only when both its provider's and its model's breakers let it.

The open time is 60 s, doubling with each consecutive opening up to 15 min.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, StrictStr

from tek_actors.providers.types import DISABLING, ProviderFailure
from tek_actors.wire import WireModel

__all__ = [
    "FAILURES_TO_OPEN",
    "Board",
    "Breakers",
    "Health",
    "Key",
    "ResetPayload",
    "Verdict",
    "after_failure",
    "breaker_state",
    "describe",
    "event_data",
]

FAILURES_TO_OPEN = 3
OPEN_BASE_S = 60.0
OPEN_CAP_S = 900.0
OPENS_AT_ONCE = frozenset({"rate_limited", "model_not_found"})

State = Literal["healthy", "rate_limited", "open", "error"]
Gate = Literal["closed", "trial", "trialing", "open", "disabled"]
Key = tuple[str, str | None]  # (provider, model id); model None: the provider's own breaker

# The stricter gate wins when a provider's and a model's breaker disagree.
_STRICTNESS: dict[Gate, int] = {"closed": 0, "trial": 1, "trialing": 2, "open": 3, "disabled": 4}


class Health(BaseModel):
    state: State = "healthy"
    until: float | None = None  # wall-clock time the breaker may let a trial through
    last_error: str | None = None
    opens: int = 0  # consecutive openings (the open time doubles with each)
    config_fingerprint: str | None = None  # state "error": the configuration that failed


class Breakers(BaseModel):
    """Every breaker's health: the durable part, rebuilt from `provider.health` events."""

    health: dict[str, Health] = {}  # provider -> its own breaker
    models: dict[str, dict[str, Health]] = {}  # provider -> model id -> that model's breaker

    def of(self, key: Key) -> Health:
        provider, model = key
        if model is None:
            return self.health.get(provider, Health())
        return self.models.get(provider, {}).get(model, Health())

    def with_health(self, key: Key, health: Health) -> Self:
        provider, model = key
        if model is None:
            return self.model_copy(update={"health": {**self.health, provider: health}})
        models = {**self.models.get(provider, {}), model: health}
        return self.model_copy(update={"models": {**self.models, provider: models}})

    def without(self, provider: str) -> Self:
        return self.model_copy(
            update={
                "health": {k: v for k, v in self.health.items() if k != provider},
                "models": {k: v for k, v in self.models.items() if k != provider},
            }
        )

    def applied(self, data: dict[str, Any]) -> Self:
        """After a `provider.health` event (`model` absent or None: the provider's breaker)."""
        key = (str(data["provider"]), data.get("model"))
        return self.with_health(key, Health.model_validate(_health_fields(data)))


class ResetPayload(WireModel):
    """`providers.reset`: the breaker to close by hand, a provider's own (`model` nil) or that
    of one of its models."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    model: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None


def _health_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in Health.model_fields if k in data}


def event_data(key: Key, health: Health) -> dict[str, Any]:
    """The data of the `provider.health` event that sets breaker `key` to `health`."""
    return {"provider": key[0], "model": key[1], **health.model_dump(mode="json")}


def after_failure(
    health: Health,
    failure: ProviderFailure,
    consecutive: int,
    *,
    trial: bool,
    now: float,
    fingerprint: str | None,
) -> Health | None:
    """The breaker's health after `failure` (its `consecutive`-th transient one in a row), or
    None while the breaker stays closed."""
    if failure.kind in DISABLING:
        return Health(state="error", last_error=failure.message, config_fingerprint=fingerprint)
    if not (failure.kind in OPENS_AT_ONCE or trial or consecutive >= FAILURES_TO_OPEN):
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


def describe(health: Health, now: float) -> dict[str, Any]:
    """One breaker as `providers.status` shows it."""
    return {
        "state": health.state,
        "until": health.until,
        "last_error": health.last_error,
        "breaker": breaker_state(health, now),
    }


def _gate(health: Health, now: float, *, trial_running: bool) -> Gate:
    if health.state == "error":
        return "disabled"
    if health.state in ("rate_limited", "open"):
        if health.until is not None and now < health.until:
            return "open"
        return "trialing" if trial_running else "trial"
    return "closed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the breakers say about a call to (provider, model)."""

    gate: Gate  # closed and trial let it through; the others stop it
    trials: tuple[Key, ...] = ()  # the half-open breakers this call would be the trial of
    blocking: Key | None = None  # the breaker that stops it

    @property
    def passes(self) -> bool:
        return self.gate in ("closed", "trial")


class Board:
    """The volatile side of the breakers, touched on the actor's thread only: consecutive
    transient failures, and the half-open breakers whose one trial call is in flight. The
    transitions return the changes to journal; the caller persists them."""

    def __init__(self) -> None:
        self.failures: dict[Key, int] = {}
        self.trials: set[Key] = set()

    def verdict(self, breakers: Breakers, provider: str, model: str, now: float) -> Verdict:
        worst: Verdict = Verdict("closed")
        trials: list[Key] = []
        for key in ((provider, None), (provider, model)):
            gate = _gate(breakers.of(key), now, trial_running=key in self.trials)
            if gate == "trial":
                trials.append(key)
            if _STRICTNESS[gate] > _STRICTNESS[worst.gate]:
                worst = Verdict(gate, blocking=key)
        return Verdict(worst.gate, tuple(trials), worst.blocking) if worst.passes else worst

    def begin(self, trials: tuple[Key, ...]) -> None:
        self.trials.update(trials)

    def end(self, trials: tuple[Key, ...]) -> None:
        self.trials.difference_update(trials)

    def forget(self, provider: str) -> None:
        self.failures = {k: v for k, v in self.failures.items() if k[0] != provider}
        self.trials = {k for k in self.trials if k[0] != provider}

    def succeeded(self, breakers: Breakers, provider: str, model: str) -> list[tuple[Key, Health]]:
        """A call to (provider, model) answered: both breakers close."""
        changes: list[tuple[Key, Health]] = []
        keys: tuple[Key, Key] = ((provider, None), (provider, model))
        for key in keys:
            self.failures.pop(key, None)
            if breakers.of(key).state != "healthy":
                changes.append((key, Health()))
        return changes

    def reset(self, breakers: Breakers, key: Key) -> list[tuple[Key, Health]]:
        """Close breaker `key` by hand: its count of failures starts over and a trial in flight
        no longer holds it (that trial's own outcome still counts when it comes). The change to
        journal, none if it is closed already."""
        self.failures.pop(key, None)
        self.trials.discard(key)
        return [] if breakers.of(key).state == "healthy" else [(key, Health())]

    def failed(
        self,
        breakers: Breakers,
        provider: str,
        model: str,
        failure: ProviderFailure,
        *,
        trials: tuple[Key, ...],
        now: float,
        fingerprint: str | None,
    ) -> list[tuple[Key, Health]]:
        """A call to (provider, model) failed with `failure` (never a caller's fault)."""
        changes: list[tuple[Key, Health]] = []
        own: Key = (provider, None) if failure.scope == "provider" else (provider, model)
        if failure.scope == "model":  # the provider answered, so it is up
            server: Key = (provider, None)
            self.failures.pop(server, None)
            health = breakers.of(server)
            if server in trials and health.state in ("rate_limited", "open"):
                changes.append((server, Health()))
        if failure.kind not in DISABLING:
            self.failures[own] = self.failures.get(own, 0) + 1
        after = after_failure(
            breakers.of(own),
            failure,
            self.failures.get(own, 0),
            trial=own in trials,
            now=now,
            fingerprint=fingerprint,
        )
        if after is not None:
            if after.state != "error":
                self.failures[own] = 0  # an opening starts the count over
            changes.append((own, after))
        return changes
