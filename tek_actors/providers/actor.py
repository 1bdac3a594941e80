"""ProviderActor: every model call, with a circuit breaker per provider, retries and failover.

A call names a model alias. The alias and its `fallbacks` form a chain; the first alias whose
provider the breaker admits gets the call, on that provider's bounded worker pool (blocking HTTP
never runs on this actor's thread; results come back as messages). A failure before the first
streamed token moves down the chain; when the chain is exhausted and another try could help,
the whole chain is tried again (at most twice) after a jittered exponential backoff that honours
Retry-After up to 60 s. A failure after text was streamed is never retried or failed over: the
partial reply is returned, marked `incomplete`.

A breaker per provider (breaker.py) opens at a 429, or after 3 consecutive transient failures,
and disables a provider whose key or quota failed until its configuration changes. Bad requests
and context overflows are the caller's fault: never retried, never counted. Every state change is
journaled as `provider.health` (so a restarted gateway does not hammer a provider that asked it
to wait) and published by that. Keys are read from the configuration at each `config.changed`;
a call dispatched after that uses the new key, and one queued before it that had not started is
re-dispatched with it.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pykka
from pydantic import BaseModel

from tek_actors.config import Config, ConfigDependent
from tek_actors.errors import (
    InvalidValue,
    NotFound,
    RateLimited,
    TekError,
    Unavailable,
)
from tek_actors.providers.adapters import ADAPTERS, Target
from tek_actors.providers.breaker import Health, after_failure, breaker_state
from tek_actors.providers.catalog import resolve_context_window
from tek_actors.providers.messages import (
    CallKnown,
    CallQuery,
    Complete,
    CompletionDelta,
    CompletionDone,
)
from tek_actors.providers.runtime import ProviderRuntime, fingerprint
from tek_actors.providers.types import (
    CALLER_FAULTS,
    DISABLING,
    TRANSIENT,
    CompletePayload,
    Completion,
    Message,
    ModelRequest,
    NamePayload,
    ProviderFailure,
)
from tek_actors.runtime import ActorContext, PersistentActor, Ticket, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.store import NewEvent
from tek_actors.wire import EmptyPayload

__all__ = ["ProviderActor", "ProvidersState"]

MAX_RETRIES = 2
RETRY_BASE_S = 0.5
RETRY_AFTER_CAP_S = 60.0
QUEUE_PER_WORKER = 8


class ProvidersState(BaseModel):
    health: dict[str, Health] = {}


@dataclass
class _Call:
    id: str
    chain: list[str]
    request: ModelRequest
    ticket: Ticket | None = None
    reply_to: pykka.ActorRef[Any] | None = None
    stream: bool = False
    index: int = 0
    round: int = 0
    attempt: int = 0
    tried: list[str] = field(default_factory=list)
    failures: dict[str, ProviderFailure] = field(default_factory=dict)
    in_flight: str | None = None  # the provider of the current attempt
    runtime: ProviderRuntime | None = None  # ... and the runtime it went to
    trial: bool = False
    probe: bool = False  # providers.test: no failover, no effect on the breaker
    started_at: float = 0.0


class _AttemptDone:
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


class _Retry:
    __slots__ = ("call_id",)

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id


class ProviderActor(ConfigDependent, PersistentActor[ProvidersState]):
    domain = "providers"
    state_model = ProvidersState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.config = Config()
        self.runtimes: dict[str, ProviderRuntime] = {}
        self.retired: list[ProviderRuntime] = []
        self.calls: dict[str, _Call] = {}
        self.failures: dict[str, int] = {}  # consecutive transient failures, per provider
        self.trials: set[str] = set()  # providers with a half-open trial in flight
        self._rng = random.Random()

    def apply(self, state: ProvidersState, event: NewEvent) -> ProvidersState:
        if event.type == "provider.health":
            data = dict(event.data)
            name = data.pop("provider")
            health = Health.model_validate({k: data[k] for k in Health.model_fields if k in data})
            return ProvidersState(health={**state.health, name: health})
        if event.type == "provider.removed":
            return ProvidersState(
                health={k: v for k, v in state.health.items() if k != event.data["provider"]}
            )
        return state

    # -- configuration -----------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        self.config = config
        for name, cfg in config.providers.items():
            key = cfg.api_key or (os.environ.get(cfg.api_key_env) if cfg.api_key_env else None)
            made_for = fingerprint(cfg, key)
            old = self.runtimes.get(name)
            if old is not None and old.fingerprint == made_for:
                continue
            if old is not None:
                self._retire(old)
            self.runtimes[name] = ProviderRuntime(name, cfg, key, made_for)
            health = self.state.health.get(name)
            stuck = health is not None and health.state == "error"
            if stuck and health.config_fingerprint != made_for:  # type: ignore[union-attr]
                self._set_health(name, Health(), "its configuration changed")
        for name in [n for n in self.runtimes if n not in config.providers]:
            self._retire(self.runtimes.pop(name))
            if name in self.state.health:
                self.persist(NewEvent("provider.removed", {"provider": name}))

    def _retire(self, runtime: ProviderRuntime) -> None:
        runtime.retired = True
        if runtime.in_flight:
            self.retired.append(runtime)  # closed when its last call reports back
        else:
            runtime.close()

    def on_release(self) -> None:
        for runtime in [*self.runtimes.values(), *self.retired]:
            runtime.close()

    def on_end(self) -> None:
        for call in list(self.calls.values()):
            self._finish(
                call,
                None,
                Unavailable(
                    "the gateway is restarting; the model call was stopped", retry_after_ms=1000
                ),
            )
        super().on_end()

    # -- requests ----------------------------------------------------------------------------

    @command("providers.complete", CompletePayload)
    def complete(self, payload: CompletePayload) -> None:
        request = ModelRequest(
            messages=payload.messages,
            tools=payload.tools,
            max_tokens=payload.max_tokens,
            temperature=payload.temperature,
        )
        chain = self._chain(payload.model)
        call = _Call(uuid.uuid4().hex[:16], chain, request, ticket=self.defer())
        call.stream = payload.stream
        self._start(call)

    @command("providers.status", EmptyPayload)
    def providers_status(self, payload: EmptyPayload) -> dict[str, Any]:
        return {"providers": {name: self._describe(name) for name in self.config.providers}}

    @command("providers.list", EmptyPayload)
    def providers_list(self, payload: EmptyPayload) -> dict[str, Any]:
        providers = {}
        for name, cfg in self.config.providers.items():
            runtime = self.runtimes.get(name)
            if cfg.api_key:
                key = "in config.json"
            elif cfg.api_key_env:
                key = f"${cfg.api_key_env}" + ("" if runtime and runtime.key else " (not set)")
            else:
                key = "none"
            providers[name] = {
                "kind": cfg.kind,
                "base_url": cfg.base_url,
                "key": key,
                "concurrency": cfg.concurrency,
                "timeout_s": cfg.timeout_s,
                "models": sorted(a for a, m in self.config.models.items() if m.provider == name),
                "state": self._describe(name)["state"],
            }
        models = {}
        for alias, model in self.config.models.items():
            window, source = resolve_context_window(model)
            models[alias] = {
                **model.model_dump(mode="json"),
                "context_window": window,
                "context_window_source": source,
            }
        return {
            "providers": providers,
            "models": models,
            "default_model": self.config.default_model,
        }

    @command("providers.test", NamePayload)
    def test(self, payload: NamePayload) -> None:
        name = payload.name
        if name not in self.config.providers:
            raise NotFound(
                f"there is no provider {name!r}",
                details={"name": name, "known": sorted(self.config.providers)},
            )
        aliases = sorted(a for a, m in self.config.models.items() if m.provider == name)
        if not aliases:
            raise InvalidValue(
                f"no model alias uses provider {name!r}; add one under models first",
                details={"path": "models", "expected": f"an alias with provider {name!r}"},
            )
        request = ModelRequest(messages=[Message(role="user", content="Reply with: pong")])
        call = _Call(uuid.uuid4().hex[:16], [aliases[0]], request, ticket=self.defer())
        call.probe = True
        self._start(call)

    def public_state(self) -> dict[str, Any]:
        return {"providers": {name: self._describe(name) for name in self.config.providers}}

    # -- internal messages -------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _AttemptDone):
            self._attempt_done(message)
            return None
        if isinstance(message, _Retry):
            call = self.calls.get(message.call_id)
            if call is not None:
                self._advance(call)
            return None
        if isinstance(message, CallQuery):
            tell_quietly(
                message.reply_to, CallKnown(message.call_id, message.call_id in self.calls)
            )
            return None
        if isinstance(message, Complete):
            try:
                chain = self._chain(message.alias)
            except TekError as err:
                tell_quietly(message.reply_to, CompletionDone(message.call_id, None, err))
                return None
            call = _Call(message.call_id, chain, message.request, reply_to=message.reply_to)
            self._start(call)
            return None
        return super().on_message(message)

    # -- the call path -----------------------------------------------------------------------

    def _chain(self, alias: str | None) -> list[str]:
        models = self.config.models
        first = alias or self.config.default_model
        if first not in models:
            raise InvalidValue(
                f"there is no model alias {first!r}",
                details={"path": "model", "expected": f"one of {sorted(models)}"},
            )
        chain = [first]
        for fallback in models[first].fallbacks:
            if fallback in models and fallback not in chain:
                chain.append(fallback)
        return chain

    def _start(self, call: _Call) -> None:
        call.started_at = time.monotonic()
        self.calls[call.id] = call
        self._advance(call)

    def _advance(self, call: _Call) -> None:
        """Dispatch the call to the next admissible alias of its chain, or end it."""
        while call.index < len(call.chain):
            alias = call.chain[call.index]
            provider = self.config.models[alias].provider
            verdict = "go" if call.probe else self._admit(provider)
            if verdict in ("go", "trial"):
                self._dispatch(call, alias, provider, trial=verdict == "trial")
                return
            call.index += 1
        helpful = [f for f in call.failures.values() if f.kind in TRANSIENT]
        providers = {self.config.models[a].provider for a in call.chain}
        admissible = [p for p in providers if self._admit(p, peek=True) == "go"]
        if not call.probe and call.round < MAX_RETRIES and helpful and admissible:
            call.round += 1
            call.index = 0
            delay = RETRY_BASE_S * 2 ** (call.round - 1) * self._rng.uniform(0.8, 1.2)
            waits = [f.retry_after_s for f in helpful if f.retry_after_s is not None]
            if waits:
                delay = max(delay, min(max(waits), RETRY_AFTER_CAP_S))
            self.log.info("call {}: trying its chain again in {:.2f} s", call.id, delay)
            self.after(delay, _Retry(call.id))
            return
        self._finish(call, None, self._exhausted(call))

    def _admit(self, provider: str, *, peek: bool = False) -> str:
        """go | trial | busy | open | disabled."""
        runtime = self.runtimes.get(provider)
        health = self.state.health.get(provider, Health())
        if runtime is None or health.state == "error":
            return "disabled"
        if health.state in ("rate_limited", "open"):
            if health.until is not None and self.ctx.clock.time() < health.until:
                return "open"
            if provider in self.trials:
                return "busy"
            return "go" if peek else "trial"
        if runtime.in_flight >= runtime.cfg.concurrency * QUEUE_PER_WORKER:
            return "busy"
        return "go"

    def _dispatch(self, call: _Call, alias: str, provider: str, *, trial: bool) -> None:
        runtime = self.runtimes[provider]
        model = self.config.models[alias]
        cfg = runtime.cfg
        if cfg.kind != "local" and not runtime.key and cfg.api_key_env:
            failure = ProviderFailure(
                "unconfigured", f"{provider}: ${cfg.api_key_env} is not set in the environment"
            )
            self._attempt_failed(call, provider, failure)
            return
        target = Target(
            alias=alias,
            provider=provider,
            kind=cfg.kind,
            model_id=model.model,
            base_url=cfg.base_url,
            key=runtime.key,
            timeout_s=cfg.timeout_s,
            max_output_tokens=model.max_output_tokens,
        )
        call.attempt += 1
        call.in_flight = provider
        call.runtime = runtime
        call.trial = trial
        if trial:
            self.trials.add(provider)
        runtime.in_flight += 1
        attempt, ref, request = call.attempt, self.actor_ref, call.request
        on_delta = self._delta_sink(call)
        adapter = ADAPTERS[cfg.kind]

        def work() -> None:
            if runtime.retired:  # queued before a configuration change: not sent
                tell_quietly(ref, _AttemptDone(call.id, attempt, None, None, stale=True))
                return
            try:
                completion = adapter.call(runtime.http, target, request, on_delta)
                result = _AttemptDone(call.id, attempt, completion, None)
            except ProviderFailure as failure:
                if runtime.retired and not failure.started:
                    result = _AttemptDone(call.id, attempt, None, None, stale=True)
                else:
                    result = _AttemptDone(call.id, attempt, None, failure)
            except Exception as exc:  # an adapter bug: visible, never a retry storm
                self.log.opt(exception=exc).error("the {} adapter failed", cfg.kind)
                bug = ProviderFailure(
                    "bad_request", f"{provider}: tek's {cfg.kind} adapter failed: {exc!r}"
                )
                result = _AttemptDone(call.id, attempt, None, bug)
            tell_quietly(ref, result)

        try:
            runtime.pool.submit(work)
        except RuntimeError:  # the pool was shut down under us: the same as stale
            self.actor_ref.tell(_AttemptDone(call.id, attempt, None, None, stale=True))

    def _delta_sink(self, call: _Call) -> Any:
        if call.reply_to is not None:
            reply_to, call_id = call.reply_to, call.id
            return lambda text: tell_quietly(reply_to, CompletionDelta(call_id, text))
        if call.stream:
            publish, call_id = self.ctx.publish, call.id
            return lambda text: publish("provider.delta", {"call_id": call_id, "text": text})
        return lambda text: None

    def _attempt_done(self, done: _AttemptDone) -> None:
        call = self.calls.get(done.call_id)
        if call is None or done.attempt != call.attempt or call.in_flight is None:
            return
        provider, runtime = call.in_flight, call.runtime
        call.in_flight, call.runtime = None, None
        if runtime is not None:
            runtime.in_flight -= 1
            if runtime in self.retired and runtime.in_flight <= 0:
                self.retired.remove(runtime)
                runtime.close()
        self.trials.discard(provider)
        if done.stale:
            self._advance(call)  # same alias, now with the new configuration
            return
        if done.completion is not None:
            completion = done.completion.model_copy(update={"fallback_from": list(call.tried)})
            if call.probe:
                self._finish_probe(call, completion, None)
                return
            self._succeeded(provider)
            self._finish(call, completion, None)
            return
        assert done.failure is not None
        self._attempt_failed(call, provider, done.failure)

    def _attempt_failed(self, call: _Call, provider: str, failure: ProviderFailure) -> None:
        alias = call.chain[call.index]
        self.log.warning("call {} on {} failed: {}", call.id, alias, failure.message)
        if call.probe:
            self._finish_probe(call, None, failure)
            return
        if failure.kind not in CALLER_FAULTS:
            self._failed(provider, failure, trial=call.trial)
        if failure.started and failure.partial is not None:
            partial = failure.partial.model_copy(update={"fallback_from": list(call.tried)})
            self._finish(call, partial, None)  # no retry: the text was already shown
            return
        call.failures[alias] = failure
        call.tried.append(alias)
        if failure.kind in CALLER_FAULTS:
            self._finish(call, None, self._caller_fault(failure))
            return
        call.index += 1
        self._advance(call)

    def _finish(self, call: _Call, completion: Completion | None, error: TekError | None) -> None:
        self.calls.pop(call.id, None)
        if call.ticket is not None:
            if error is not None:
                self.answer(call.ticket, error=error)
            else:
                assert completion is not None
                self.answer(call.ticket, completion.model_dump(mode="json"))
        if call.reply_to is not None:
            tell_quietly(call.reply_to, CompletionDone(call.id, completion, error))

    def _finish_probe(
        self, call: _Call, completion: Completion | None, failure: ProviderFailure | None
    ) -> None:
        """providers.test: what one direct request did, and the provider's state."""
        self.calls.pop(call.id, None)
        provider = self.config.models[call.chain[0]].provider
        result: dict[str, Any] = {
            "provider": provider,
            "model": call.chain[0],
            "ok": completion is not None and not completion.incomplete,
            "latency_ms": round((time.monotonic() - call.started_at) * 1000, 1),
            "state": self._describe(provider),
        }
        if completion is not None:
            result["reply"] = completion.text[:200]
        if failure is not None:
            result["error"] = failure.describe()
        assert call.ticket is not None
        self.answer(call.ticket, result)

    # -- errors for callers ------------------------------------------------------------------

    @staticmethod
    def _caller_fault(failure: ProviderFailure) -> TekError:
        details = {"path": "messages", "expected": "a request the model accepts"}
        details |= failure.describe()
        return InvalidValue(failure.message, details=details)

    def _exhausted(self, call: _Call) -> TekError:
        now = self.ctx.clock.time()
        providers: dict[str, Any] = {}
        for alias in call.chain:
            name = self.config.models[alias].provider
            entry = self._describe(name)
            failure = call.failures.get(alias)
            if failure is not None:
                entry["failure"] = failure.describe()
            providers[name] = entry
        waits = [e["until"] - now for e in providers.values() if e.get("until")]
        retry_ms = max(1000, int(min(waits) * 1000)) if waits else 5000
        parts = []
        for name, entry in providers.items():
            when = ""
            if entry.get("until"):
                when = f", back in {max(0, entry['until'] - now):.0f} s"
            why = (entry.get("failure") or {}).get("message") or entry.get("last_error") or ""
            parts.append(f"{name} ({entry['state']}{when}{': ' + why if why else ''})")
        message = f"no model in the chain {call.chain} could answer: " + "; ".join(parts)
        # The gateway already retried as far as it helps: a client should not resend at once.
        details: dict[str, Any] = {"providers": providers, "chain": call.chain}
        details |= {"tried": call.tried, "retryable": False}
        states = {e["state"] for e in providers.values()}
        if states == {"rate_limited"} or any(
            f.kind == "rate_limited" for f in call.failures.values()
        ):
            return RateLimited(message, retry_after_ms=retry_ms, details=details)
        return Unavailable(message, retry_after_ms=retry_ms, details=details)

    # -- the breaker -------------------------------------------------------------------------

    def _describe(self, name: str) -> dict[str, Any]:
        health = self.state.health.get(name, Health())
        runtime = self.runtimes.get(name)
        return {
            "state": health.state,
            "until": health.until,
            "last_error": health.last_error,
            "breaker": breaker_state(health, self.ctx.clock.time()),
            "in_flight": runtime.in_flight if runtime else 0,
        }

    def _succeeded(self, provider: str) -> None:
        self.failures[provider] = 0
        health = self.state.health.get(provider, Health())
        if health.state != "healthy":
            self._set_health(provider, Health(), None)

    def _failed(self, provider: str, failure: ProviderFailure, *, trial: bool) -> None:
        if failure.kind not in DISABLING:
            self.failures[provider] = self.failures.get(provider, 0) + 1
        runtime = self.runtimes.get(provider)
        after = after_failure(
            self.state.health.get(provider, Health()),
            failure,
            self.failures.get(provider, 0),
            trial=trial,
            now=self.ctx.clock.time(),
            fingerprint=runtime.fingerprint if runtime else None,
        )
        if after is not None:
            if after.state != "error":
                self.failures[provider] = 0  # an opening starts the count over
            self._set_health(provider, after, failure.message)

    def _set_health(self, provider: str, health: Health, reason: str | None) -> None:
        data = {"provider": provider, **health.model_dump(mode="json")}
        self.log.info("provider {} is now {} ({})", provider, health.state, reason or "ok")
        self.persist(NewEvent("provider.health", data))
