"""First-run setup as checkpointed steps.

Each step asks its questions, applies its change (through the gateway, or as a locked offline
write), and only then is marked done in `<state>/setup.json`. So an interrupted setup resumes
at the first step not done (a step cut short between its change and its checkpoint runs again,
and setting the same values again changes nothing); `reset` starts over. Every step names the
setup version that introduced it: after an upgrade, only the steps that are new run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tek_actors.providers.catalog import DEFAULT_CONTEXT_WINDOW, catalog_entry
from tek_actors.store import remove_quietly, write_atomic

__all__ = ["STEPS", "Asker", "Checkpoints", "ConfigWriter", "Step"]


class Asker(Protocol):
    """How a step asks a person (the CLI uses click prompts; tests can script it)."""

    def choose(self, question: str, choices: list[str], default: str) -> str: ...

    def text(self, question: str, default: str | None = None, *, secret: bool = False) -> str: ...

    def number(self, question: str, default: int) -> int: ...


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
    env_name = ask.text("Environment variable with the API key (empty: type the key here)", env)
    if env_name:
        provider["api_key_env"] = env_name
    else:
        provider["api_key"] = ask.text("API key (stored only in config.json)", secret=True)
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
