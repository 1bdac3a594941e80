"""`tek providers list|status|test NAME|reset NAME`."""

from __future__ import annotations

import time
from typing import Any

import click

from tek_actors.cli._output import Output, gateway_client
from tek_actors.cli._render import print_table, visible, when

__all__ = ["providers"]


@click.group()
def providers() -> None:
    """Model providers: what is configured, their health, a live test."""


def _until(value: float | None) -> str:
    if not value:
        return ""
    left = value - time.time()
    return f"{when(value)} ({max(0, left):.0f} s)"


def _window(model: dict[str, Any]) -> str:
    """The resolved window, marked with its source unless that is the config: "128000 (catalog)"."""
    source = model.get("context_window_source", "config")
    return str(model["context_window"]) + ("" if source == "config" else f" ({source})")


@providers.command(name="list")
@click.pass_obj
def list_(out: Output) -> None:
    """Providers and model aliases (keys are never shown)."""
    with gateway_client(out) as client:
        result = client.call("providers.list")
    if out.json:
        out.emit(result)
        return
    print_table(
        ["provider", "kind", "base url", "key", "models", "state"],
        [
            [name, p["kind"], p["base_url"] or "", p["key"], ", ".join(p["models"]), p["state"]]
            for name, p in sorted(result["providers"].items())
        ],
    )
    print_table(
        ["alias", "provider", "model", "context", "fallbacks"],
        [
            [
                alias + (" (default)" if alias == result["default_model"] else ""),
                m["provider"],
                m["model"],
                _window(m),
                ", ".join(m["fallbacks"]),
            ]
            for alias, m in sorted(result["models"].items())
        ],
    )


@providers.command()
@click.pass_obj
def status(out: Output) -> None:
    """Each provider's breaker: healthy, rate_limited, open or error, and until when."""
    with gateway_client(out) as client:
        result = client.call("providers.status")
    if out.json:
        out.emit(result)
        return
    print_table(
        ["provider", "state", "breaker", "until", "in flight", "last error"],
        [
            [
                name,
                h["state"],
                h["breaker"],
                _until(h["until"]),
                h["in_flight"],
                h["last_error"] or "",
            ]
            for name, h in sorted(result["providers"].items())
        ],
    )


@providers.command()
@click.argument("name")
@click.option("--timeout", default=130.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def test(out: Output, name: str, timeout: float) -> None:
    """Send one real request to provider NAME; print the latency and its state."""
    with gateway_client(out, timeout=timeout) as client:
        result: dict[str, Any] = client.call("providers.test", {"name": name}, timeout=timeout)
    if out.json:
        out.emit(result)
    else:
        state = result["state"]["state"]
        if result["ok"]:  # the reply is a model's text: quoted, its controls visible
            click.echo(
                visible(
                    f"{name} answered in {result['latency_ms']} ms via {result['model']} "
                    f"(state {state}): {result.get('reply', '')!r}"
                )
            )
        else:
            error = result.get("error", {})
            click.echo(
                click.style(f"{visible(name)} failed", fg="red")
                + visible(
                    f" after {result['latency_ms']} ms ({state}): "
                    f"{error.get('kind')}: {error.get('message')}"
                )
            )
    if not result["ok"]:
        raise SystemExit(1)


@providers.command()
@click.argument("name")
@click.option("--model", help="The breaker of this model of the provider (its model id).")
@click.pass_obj
def reset(out: Output, name: str, model: str | None) -> None:
    """Close provider NAME's breaker by hand (or, with --model, one model's breaker)."""
    with gateway_client(out) as client:
        result = client.call("providers.reset", {"name": name, "model": model})
    which = visible(name) + (f" model {visible(model)}" if model else "")
    said = "closed" if result["changed"] else "was closed already"
    out.done(result, f"{which}: breaker {said} (healthy)")
