"""ProviderActor: every model call, with breakers, a fair wait for capacity, retries and failover.

A call names a model alias. The alias and its `fallbacks` form a chain; the first alias whose
breakers let it through gets the call, on that provider's worker pool (blocking HTTP never runs
on this actor's thread; results come back as messages). A failure before the first streamed
token moves down the chain; when the chain is exhausted and another try could help, the whole
chain is tried again (at most twice) after a jittered exponential backoff that honours
Retry-After up to 60 s. A failure after text was streamed is never retried or failed over: the
partial reply is returned, marked `incomplete`.

A provider runs `concurrency` calls at once. A call that finds them all taken waits in the
provider's admission queue (admission.py: bounded, round robin per caller) until a worker is
free, published as `provider.waiting`: a busy provider makes a call wait, never fail, and only a
failing provider fails over (a busy one only when the alias says `overflow_to_fallback`). A call
whose deadline passes while it waits ends `timeout`; one that finds the queue full, `overloaded`.

Breakers (breaker.py) are keyed by what failed: one per provider (it cannot be reached, its key
is refused) and one per model of a provider (a 429, an overload, an unknown model), so a
rate-limited model of a proxy leaves its other models in the chain. Bad requests and context
overflows are the caller's fault: never retried, never counted. Every breaker change is
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
from dataclasses import dataclass
from typing import Any

from tek_actors.config import Config, ConfigDependent
from tek_actors.errors import InvalidValue, NotFound, TekError, Unavailable
from tek_actors.providers.adapters import ADAPTERS, Target
from tek_actors.providers.breaker import (
    Board,
    Breakers,
    Health,
    Key,
    ResetPayload,
    Verdict,
    event_data,
)
from tek_actors.providers.calls import (
    AttemptDone,
    Call,
    Retry,
    WaitExpired,
    blocked_reason,
    caller_fault,
    exhausted,
)
from tek_actors.providers.messages import (
    CallKnown,
    CallQuery,
    Complete,
    CompletionDelta,
    CompletionDone,
)
from tek_actors.providers.runtime import ProviderRuntime, fingerprint
from tek_actors.providers.status import listed, provider_status
from tek_actors.providers.types import (
    CALLER_FAULTS,
    TRANSIENT,
    CompletePayload,
    Completion,
    Message,
    ModelRequest,
    NamePayload,
    ProviderFailure,
)
from tek_actors.providers.waiting import WaitingRoom
from tek_actors.runtime import ActorContext, PersistentActor, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.store import NewEvent
from tek_actors.wire import EmptyPayload

__all__ = ["ProviderActor", "ProvidersState"]

MAX_RETRIES = 2
RETRY_BASE_S = 0.5
RETRY_AFTER_CAP_S = 60.0


class ProvidersState(Breakers):
    """Every breaker's health (providers' and models'), rebuilt from `provider.health`."""


@dataclass(frozen=True, slots=True)
class _Admission:
    kind: str  # go | busy (capacity taken: wait) | skip (a breaker stops it: fail over)
    trials: tuple[Key, ...] = ()
    reason: str = ""


class ProviderActor(ConfigDependent, PersistentActor[ProvidersState]):
    domain = "providers"
    state_model = ProvidersState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.config = Config()
        self.runtimes: dict[str, ProviderRuntime] = {}
        self.retired: list[ProviderRuntime] = []
        self.calls: dict[str, Call] = {}
        self.board = Board()
        self.waiting = WaitingRoom(ctx.clock, self.after, self.publish)
        self._rng = random.Random()

    def apply(self, state: ProvidersState, event: NewEvent) -> ProvidersState:
        if event.type == "provider.health":
            return state.applied(dict(event.data))
        if event.type == "provider.removed":
            return state.without(event.data["provider"])
        return state

    # -- configuration -----------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        self.config = config
        for name, cfg in config.providers.items():
            key = cfg.api_key or (os.environ.get(cfg.api_key_env) if cfg.api_key_env else None)
            made_for = fingerprint(cfg, key)
            self.waiting.resize(name, cfg.max_waiting)
            old = self.runtimes.get(name)
            if old is not None and old.fingerprint == made_for:
                continue
            if old is not None:
                self._retire(old)
            self.runtimes[name] = ProviderRuntime(name, cfg, key, made_for)
            health = self.state.of((name, None))
            if health.state == "error" and health.config_fingerprint != made_for:
                self._set_health(
                    [((name, None), Health())], None, healed="its configuration changed"
                )
        for name in [n for n in self.runtimes if n not in config.providers]:
            self._retire(self.runtimes.pop(name))
            self.board.forget(name)
            if name in self.state.health or name in self.state.models:
                self.persist(NewEvent("provider.removed", {"provider": name}))
        for name in self.waiting.providers():
            self._pump(name)  # new workers, or a provider gone: its waiting calls move on
            if name not in config.providers:
                self.waiting.forget(name)

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
        stopped = Unavailable(
            "the gateway is restarting; the model call was stopped", retry_after_ms=1000
        )
        for call in list(self.calls.values()):
            self._finish(call, None, stopped)
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
        call_id = uuid.uuid4().hex[:16]
        ticket = self.defer()
        caller = f"client:{ticket.client_id}" if ticket.client_id else f"call:{call_id}"
        call = Call(call_id, chain, request, caller, ticket=ticket, stream=payload.stream)
        self._start(call)

    @command("providers.status", EmptyPayload)
    def providers_status(self, payload: EmptyPayload) -> dict[str, Any]:
        return {"providers": {name: self._describe(name) for name in self.config.providers}}

    @command("providers.list", EmptyPayload)
    def providers_list(self, payload: EmptyPayload) -> dict[str, Any]:
        statuses = {name: self._describe(name) for name in self.config.providers}
        keys = {name: bool(runtime.key) for name, runtime in self.runtimes.items()}
        return listed(self.config, statuses, keys)

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
        call_id = uuid.uuid4().hex[:16]
        call = Call(call_id, [aliases[0]], request, f"call:{call_id}", ticket=self.defer())
        call.probe = True
        self._start(call)

    @command("providers.reset", ResetPayload)
    def reset(self, payload: ResetPayload) -> dict[str, Any]:
        """Close a breaker by hand, journaled as `provider.health` like every breaker change
        (nothing to journal if it is closed already), answered once durable: `{name, model,
        changed}`. `not_found` for a provider, or a model of it, that it does not know."""
        name, model = payload.name, payload.model
        if name not in self.config.providers:
            known = sorted(self.config.providers)
            raise NotFound(f"there is no provider {name!r}", details={"name": name, "known": known})
        models = sorted(self._describe(name)["models"])
        if model is not None and model not in models:
            raise NotFound(
                f"provider {name!r} has no model {model!r}",
                details={"name": name, "model": model, "known": models},
            )
        changes = self.board.reset(self.state, (name, model))
        if changes:
            self.log.info("{} {} is now healthy (reset by hand)", name, model or "(provider)")
        return self.persist(  # type: ignore[no-any-return]
            *(NewEvent("provider.health", event_data(k, h)) for k, h in changes),
            result=lambda s: {"name": name, "model": model, "changed": bool(changes)},
        )

    def public_state(self) -> dict[str, Any]:
        return {"providers": {name: self._describe(name) for name in self.config.providers}}

    # -- internal messages -------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, AttemptDone):
            self._attempt_done(message)
            return None
        if isinstance(message, Retry):
            call = self.calls.get(message.call_id)
            if call is not None:
                self._advance(call)
            return None
        if isinstance(message, WaitExpired):
            self._wait_expired(message)
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
            session = message.session
            caller = f"session:{session}" if session else f"actor:{message.reply_to.actor_urn}"
            call = Call(message.call_id, chain, message.request, caller, session=session)
            call.reply_to = message.reply_to
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

    def _start(self, call: Call) -> None:
        call.started_at = time.monotonic()
        call.deadline = self.ctx.clock.monotonic() + self._wait_budget(call)
        self.calls[call.id] = call
        self._advance(call)

    def _wait_budget(self, call: Call) -> float:
        """How long a call may wait for capacity, in all: its first provider's `timeout_s`
        (the bound of a whole call), and for a client's request no longer than the gateway's
        request deadline (after which nobody would read the answer)."""
        cfg = self.config.providers.get(self.config.models[call.chain[0]].provider)
        budget = cfg.timeout_s if cfg is not None else 120.0
        if call.ticket is not None:
            budget = min(budget, self.config.gateway.request_timeout_ms / 1000)
        return budget

    def _advance(self, call: Call, *, head_of: str | None = None) -> None:
        """Dispatch the call to the next alias of its chain that its breakers let through, make
        it wait for that provider's capacity, or end it. `head_of`: the provider whose queue
        the call just left, with a worker free for it (newcomers would queue behind others)."""
        while call.index < len(call.chain):
            alias = call.chain[call.index]
            model = self.config.models.get(alias)
            if model is None:  # the configuration changed while the call waited
                call.skipped[alias] = f"the alias {alias!r} is no longer configured"
                call.index += 1
                continue
            admission = self._admit(
                model.provider, model.model, probe=call.probe, head=head_of == model.provider
            )
            if admission.kind == "go":
                self._dispatch(call, alias, model.provider, trials=admission.trials)
                return
            if admission.kind == "busy":
                spill = self._spill(call)
                if spill is None:
                    self._wait(call, model.provider)
                    return
                call.index = spill
                continue
            call.skipped[alias] = admission.reason
            call.index += 1
        helpful = [f for f in call.failures.values() if f.kind in TRANSIENT]
        targets = self._targets(call)
        admissible = [t for t in targets if self._admit(t[1], t[2]).kind != "skip"]
        if not call.probe and call.round < MAX_RETRIES and helpful and admissible:
            call.round += 1
            call.index = 0
            call.skipped = {}
            delay = RETRY_BASE_S * 2 ** (call.round - 1) * self._rng.uniform(0.8, 1.2)
            waits = [f.retry_after_s for f in helpful if f.retry_after_s is not None]
            if waits:
                delay = max(delay, min(max(waits), RETRY_AFTER_CAP_S))
            self.log.info("call {}: trying its chain again in {:.2f} s", call.id, delay)
            self.after(delay, Retry(call.id))
            return
        entries = {provider: self._describe(provider) for _, provider, _ in targets}
        self._finish(call, None, exhausted(call, targets, entries, self.ctx.clock.time()))

    def _targets(self, call: Call) -> list[tuple[str, str, str]]:
        models = self.config.models
        return [(a, models[a].provider, models[a].model) for a in call.chain if a in models]

    def _admit(
        self, provider: str, model_id: str, *, probe: bool = False, head: bool = False
    ) -> _Admission:
        runtime = self.runtimes.get(provider)
        if runtime is None:
            return _Admission("skip", reason=f"{provider} is no longer configured")
        trials: tuple[Key, ...] = ()
        if not probe:  # providers.test goes through whatever the breakers say
            verdict = self.board.verdict(self.state, provider, model_id, self.ctx.clock.time())
            if not verdict.passes:
                return _Admission("skip", reason=self._blocked(verdict))
            trials = verdict.trials
        queued = self.waiting.waiting(provider)
        if runtime.in_flight >= runtime.capacity or (queued and not head):
            return _Admission("busy")
        return _Admission("go", trials)

    def _blocked(self, verdict: Verdict) -> str:
        assert verdict.blocking is not None
        provider, model = verdict.blocking
        health = self.state.of(verdict.blocking)
        who = provider if model is None else f"{provider}'s model {model}"
        return blocked_reason(
            who,
            health.state,
            health.until,
            health.last_error,
            self.ctx.clock.time(),
            trialing=verdict.gate == "trialing",
        )

    def _spill(self, call: Call) -> int | None:
        """With `overflow_to_fallback` on the call's alias: the next alias of its chain that can
        start now, instead of waiting for a busy one."""
        first = self.config.models.get(call.chain[0])
        if call.probe or first is None or not first.overflow_to_fallback:
            return None
        for index in range(call.index + 1, len(call.chain)):
            model = self.config.models.get(call.chain[index])
            if model is not None and self._admit(model.provider, model.model).kind == "go":
                return index
        return None

    # -- waiting for capacity ----------------------------------------------------------------

    def _wait(self, call: Call, provider: str) -> None:
        error = self.waiting.enter(call, provider, self.runtimes[provider].capacity)
        if error is not None:
            self._finish(call, None, error)

    def _pump(self, provider: str) -> None:
        """Hand `provider`'s free workers to its waiting calls, in turn. A call whose breakers
        stopped meanwhile fails over, so a provider that opened drains its whole queue."""
        while self.waiting.waiting(provider):
            runtime = self.runtimes.get(provider)
            if runtime is not None and runtime.in_flight >= runtime.capacity:
                return
            call = self.waiting.next_for(provider)
            assert call is not None
            self._advance(call, head_of=provider)

    def _wait_expired(self, expired: WaitExpired) -> None:
        call = self.calls.get(expired.call_id)
        runtime = self.runtimes.get(call.waiting_on or "") if call is not None else None
        if call is not None:
            error = self.waiting.expire(call, expired, runtime.capacity if runtime else 0)
            if error is not None:
                self._finish(call, None, error)

    # -- attempts ----------------------------------------------------------------------------

    def _dispatch(self, call: Call, alias: str, provider: str, *, trials: tuple[Key, ...]) -> None:
        runtime = self.runtimes[provider]
        model = self.config.models[alias]
        cfg = runtime.cfg
        call.model_id = model.model
        if cfg.kind != "local" and not runtime.key and cfg.api_key_env:
            failure = ProviderFailure(
                "unconfigured", f"{provider}: ${cfg.api_key_env} is not set in the environment"
            )
            self._attempt_failed(call, provider, failure, ())
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
        call.in_flight, call.runtime, call.trials = provider, runtime, trials
        call.attempt_started = self.ctx.clock.monotonic()
        self.board.begin(trials)
        runtime.in_flight += 1
        ref, call_id, attempt = self.actor_ref, call.id, call.attempt

        def report(completion: Completion | None, failure: ProviderFailure | None) -> None:
            stale = completion is None and failure is None
            tell_quietly(ref, AttemptDone(call_id, attempt, completion, failure, stale=stale))

        runtime.run(ADAPTERS[cfg.kind], target, call.request, self._delta_sink(call), report)

    def _delta_sink(self, call: Call) -> Any:
        if call.reply_to is not None:
            reply_to, call_id = call.reply_to, call.id
            return lambda text: tell_quietly(reply_to, CompletionDelta(call_id, text))
        if call.stream:
            publish, call_id = self.ctx.publish, call.id
            return lambda text: publish("provider.delta", {"call_id": call_id, "text": text})
        return lambda text: None

    def _attempt_done(self, done: AttemptDone) -> None:
        call = self.calls.get(done.call_id)
        if call is None or done.attempt != call.attempt or call.in_flight is None:
            return
        provider, runtime, trials = call.in_flight, call.runtime, call.trials
        call.in_flight, call.runtime, call.trials = None, None, ()
        if runtime is not None:
            runtime.in_flight -= 1
            if runtime in self.retired and runtime.in_flight <= 0:
                self.retired.remove(runtime)
                runtime.close()
        self.board.end(trials)
        if done.stale:
            self._advance(call)  # same alias, now with the new configuration
        else:
            self.waiting.timed(provider, self.ctx.clock.monotonic() - call.attempt_started)
            if done.completion is not None:
                self._succeeded_call(call, provider, done.completion)
            else:
                assert done.failure is not None
                self._attempt_failed(call, provider, done.failure, trials)
        self._pump(provider)

    def _succeeded_call(self, call: Call, provider: str, completion: Completion) -> None:
        completion = completion.model_copy(update={"fallback_from": list(call.tried)})
        if call.probe:
            self._finish_probe(call, provider, completion, None)
            return
        self._set_health(self.board.succeeded(self.state, provider, call.model_id), None)
        self._finish(call, completion, None)

    def _attempt_failed(
        self, call: Call, provider: str, failure: ProviderFailure, trials: tuple[Key, ...]
    ) -> None:
        alias = call.chain[call.index]
        self.log.warning("call {} on {} failed: {}", call.id, alias, failure.message)
        if call.probe:
            self._finish_probe(call, provider, None, failure)
            return
        if failure.kind not in CALLER_FAULTS:
            runtime = self.runtimes.get(provider)
            changes = self.board.failed(
                self.state,
                provider,
                call.model_id,
                failure,
                trials=trials,
                now=self.ctx.clock.time(),
                fingerprint=runtime.fingerprint if runtime else None,
            )
            self._set_health(changes, failure.message)
        if failure.started and failure.partial is not None:
            partial = failure.partial.model_copy(update={"fallback_from": list(call.tried)})
            self._finish(call, partial, None)  # no retry: the text was already shown
            return
        call.failures[alias] = failure
        call.tried.append(alias)
        if failure.kind in CALLER_FAULTS:
            self._finish(call, None, caller_fault(failure))
            return
        call.index += 1
        self._advance(call)

    def _finish(self, call: Call, completion: Completion | None, error: TekError | None) -> None:
        self.calls.pop(call.id, None)
        self.waiting.leave(call)  # if it was waiting (the actor is ending)
        if call.ticket is not None:
            if error is not None:
                self.answer(call.ticket, error=error)
            else:
                assert completion is not None
                self.answer(call.ticket, completion.model_dump(mode="json"))
        if call.reply_to is not None:
            tell_quietly(call.reply_to, CompletionDone(call.id, completion, error))

    def _finish_probe(
        self,
        call: Call,
        provider: str,
        completion: Completion | None,
        failure: ProviderFailure | None,
    ) -> None:
        """providers.test: what one direct request did, and the provider's state."""
        self.calls.pop(call.id, None)
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

    # -- the breakers ------------------------------------------------------------------------

    def _describe(self, name: str) -> dict[str, Any]:
        return provider_status(
            name,
            self.config,
            self.state,
            self.runtimes.get(name),
            self.waiting.waiting(name),
            self.ctx.clock.time(),
        )

    def _set_health(
        self,
        changes: list[tuple[Key, Health]],
        reason: str | None,
        *,
        healed: str = "it answered",
    ) -> None:
        """Journal breaker changes (`reason`: why one opened; `healed`: why one closed)."""
        if not changes:
            return
        for (provider, model), health in changes:
            which = provider if model is None else f"{provider} model {model}"
            why = healed if health.state == "healthy" else reason
            self.log.info("{} is now {} ({})", which, health.state, why)
        self.persist(*(NewEvent("provider.health", event_data(k, h)) for k, h in changes))
