"""First-run setup as checkpointed steps.

Each step asks its questions, applies its change (through the gateway, or as a locked offline
write), and only then is marked done in `<state>/setup.json`. So an interrupted setup resumes
at the first step not done (a step cut short between its change and its checkpoint runs again,
and setting the same values again changes nothing); `reset` starts over. Every step names the
setup version that introduced it: after an upgrade, only the steps that are new run.

The provider step asks where the key comes from: an environment variable (read by the
*gateway*, from its own environment), typed here (kept in config.json, never shown again), or
none (a local server: Ollama, vLLM, llama.cpp).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from tek_actors.config.document import REDACTED
from tek_actors.providers.catalog import DEFAULT_CONTEXT_WINDOW, catalog_entry
from tek_actors.store import remove_quietly, write_atomic

__all__ = ["KEY_SOURCES", "STEPS", "Asker", "Checkpoints", "ConfigWriter", "Step"]


class Asker(Protocol):
    """How a step asks a person (the CLI uses click prompts; tests can script it)."""

    def choose(self, question: str, choices: list[str], default: str) -> str: ...

    def text(self, question: str, default: str | None = None, *, secret: bool = False) -> str: ...

    def number(self, question: str, default: int) -> int: ...

    def tell(self, text: str) -> None:
        """A note for the person (nothing to answer)."""


class ConfigWriter(Protocol):
    def get(self, path: str | None) -> dict[str, Any]: ...

    def change(self, kind: str, **payload: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Step:
    id: str
    since: int  # the setup version that introduced it
    title: str
    run: Callable[[Asker, ConfigWriter], str]  # returns a one-line summary


_PROVIDER_DEFAULTS = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini"),
    "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
}


def _provider(ask: Asker, config: ConfigWriter) -> str:
    kind = ask.choose(
        "Which provider? (local is built in, offline and deterministic: for trying tek out; "
        "openai also covers Ollama, vLLM, llama.cpp and LM Studio)",
        ["local", "openai", "anthropic"],
        "local",
    )
    if kind == "local":
        return "kept the built-in local provider"
    base_url, env, model = _PROVIDER_DEFAULTS[kind]
    name = ask.text("A name for this provider", kind)
    provider: dict[str, Any] = {"kind": kind, "base_url": ask.text("Base URL", base_url)}
    provider |= _key(ask, name, provider["base_url"], env)
    config.change("set", path=f"providers.{name}", value=provider)
    alias = ask.text("A short alias for its model", "main")
    model_id = ask.text("Model id", model)
    known = catalog_entry(model_id)  # the default window: the model catalog's, else 8192
    window = known.context_window if known else DEFAULT_CONTEXT_WINDOW
    entry = {
        "provider": name,
        "model": model_id,
        "context_window": ask.number("Context window (tokens)", window),
    }
    config.change("set", path=f"models.{alias}", value=entry)
    return f"provider {name} ({kind}) with model alias {alias}"


# Where a provider's key comes from: `env` (api_key_env), `type` (api_key), `none` (no key).
KEY_SOURCES = ["env", "type", "none"]


def _key(ask: Asker, name: str, base_url: str, env: str) -> dict[str, Any]:
    source = ask.choose(
        "Its API key: from an environment variable (env), typed here and kept in config.json "
        "(type), or none (a local server such as Ollama or vLLM)",
        KEY_SOURCES,
        "none" if _on_this_network(base_url) else "env",
    )
    if source == "none":
        return {}
    if source == "type":
        key = ask.text("API key (not shown; kept in config.json, mode 0600)", secret=True)
        ask.tell(f"api_key: {REDACTED} ({len(key)} characters)")
        return {"api_key": key}
    variable = ask.text("Environment variable holding the key", env)
    here = "is set" if os.environ.get(variable) else "is NOT set"
    ask.tell(
        f"Note: the gateway reads ${variable} from its own environment, not from this shell "
        f"(where it {here}): set it where the gateway is started (the shell of `tek gateway "
        "start`, or the systemd unit's Environment=). A running gateway's environment cannot "
        f"be seen from here: `tek providers test {name}` shows whether it has the key."
    )
    return {"api_key_env": variable}


def _on_this_network(base_url: str) -> bool:
    """A server on loopback or a private network: most likely a local one, with no key."""
    try:
        host = urlsplit(base_url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_private
    except ValueError:
        return False  # a name (api.openai.com) or not a URL at all


def _default_model(ask: Asker, config: ConfigWriter) -> str:
    models = sorted(config.get("models")["value"])
    current = config.get("default_model")["value"]
    newest = next((m for m in models if m != "local"), current)
    chosen = ask.choose("Default model alias", models, newest if current == "local" else current)
    config.change("set", path="default_model", value=chosen)
    return f"default model {chosen}"


def _approvals(ask: Asker, config: ConfigWriter) -> str:
    current = config.get("approvals.default")["value"]
    policy = ask.choose(
        "Before a tool runs: ask you, run it (auto), or refuse (deny)?",
        ["ask", "auto", "deny"],
        current,
    )
    config.change("set", path="approvals.default", value=policy)
    return f"tools: {policy} by default"


STEPS: list[Step] = [
    Step("provider", 1, "The first provider", _provider),
    Step("default_model", 1, "The default model", _default_model),
    Step("approvals", 1, "Approval defaults", _approvals),
]


class Checkpoints:
    """Which steps are done, in `<state>/setup.json` (written atomically after each step)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def done(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        steps = data.get("steps") if isinstance(data, dict) else None
        return steps if isinstance(steps, dict) else {}

    def mark(self, step: Step, summary: str) -> None:
        steps = self.done()
        steps[step.id] = {"since": step.since, "done_at": time.time(), "summary": summary}
        write_atomic(self.path, json.dumps({"steps": steps}, indent=2).encode(), mode=0o600)

    def reset(self) -> None:
        remove_quietly(self.path)

    def pending(self, steps: list[Step]) -> list[Step]:
        done = self.done()
        return [step for step in steps if step.id not in done]
