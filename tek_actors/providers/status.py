"""What `providers.status` and `providers.list` show: pure functions of the configuration, the
breakers and each provider's load. Keys are never shown, only where they come from.

    providers.status  {"providers": {name: {"state", "until", "last_error", "breaker",
                       "in_flight", "capacity", "waiting", "models": {model id: {"state",
                       "until", "last_error", "breaker"}}}}}

`state`, `until` and `last_error` of a provider are PROTOCOL.md's, its own breaker's; the
breakers of its models are under `models`.
"""

from __future__ import annotations

from typing import Any

from tek_actors.config import Config
from tek_actors.config.model import ProviderConfig
from tek_actors.providers.breaker import Breakers, describe
from tek_actors.providers.catalog import resolve_context_window
from tek_actors.providers.runtime import ProviderRuntime

__all__ = ["listed", "provider_status"]


def provider_status(
    name: str,
    config: Config,
    breakers: Breakers,
    runtime: ProviderRuntime | None,
    waiting: int,
    now: float,
) -> dict[str, Any]:
    """A provider's own breaker, its load, and the breaker of each of its models (those its
    aliases name, and any other one with a recorded state)."""
    entry = describe(breakers.of((name, None)), now)
    entry["in_flight"] = runtime.in_flight if runtime else 0
    entry["capacity"] = runtime.capacity if runtime else 0
    entry["waiting"] = waiting
    models = {m.model for m in config.models.values() if m.provider == name}
    models |= set(breakers.models.get(name, {}))
    entry["models"] = {m: describe(breakers.of((name, m)), now) for m in sorted(models)}
    return entry


def listed(
    config: Config, statuses: dict[str, dict[str, Any]], keys: dict[str, bool]
) -> dict[str, Any]:
    """providers.list: every provider (`statuses` from provider_status; `keys`: whether its
    key was found), every model alias with its resolved context window, the default."""
    providers = {
        name: _listed_provider(name, cfg, config, statuses[name], keys.get(name, False))
        for name, cfg in config.providers.items()
    }
    models = {}
    for alias, model in config.models.items():
        window, source = resolve_context_window(model)
        models[alias] = {
            **model.model_dump(mode="json"),
            "context_window": window,
            "context_window_source": source,
        }
    return {"providers": providers, "models": models, "default_model": config.default_model}


def _listed_provider(
    name: str, cfg: ProviderConfig, config: Config, status: dict[str, Any], has_key: bool
) -> dict[str, Any]:
    if cfg.api_key:
        key = "in config.json"
    elif cfg.api_key_env:
        key = f"${cfg.api_key_env}" + ("" if has_key else " (not set)")
    else:
        key = "none"
    return {
        "kind": cfg.kind,
        "base_url": cfg.base_url,
        "key": key,
        "concurrency": cfg.concurrency,
        "timeout_s": cfg.timeout_s,
        "models": sorted(a for a, m in config.models.items() if m.provider == name),
        "state": status["state"],
        "model_states": {m: e["state"] for m, e in status["models"].items()},
    }
