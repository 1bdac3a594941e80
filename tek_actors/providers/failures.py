"""Turning what a provider answered (or how the connection failed) into a `ProviderFailure`.

    classify(status, headers, body, provider=..., key=...)   an HTTP error response
    from_transport(exc, provider=..., started=...)           an httpx exception
    retry_after(headers)                                     seconds to wait, from any of the
                                                             headers providers use, or None

Every failure says whose it is (`scope`): one model's (a 429, an overload that says so, an
unknown model, a slow answer) or the provider's (no connection, a refused key, a 5xx); that picks
the breaker it moves (breaker.py).

Every message is scrubbed: the provider's own error text can echo a (partly masked) key, so the
key and anything shaped like one are cut out before a message reaches a log, an event or a reply.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from tek_actors.providers.types import FailureKind, ProviderFailure, Scope

__all__ = ["classify", "from_transport", "retry_after", "scrub"]

_KEYISH = re.compile(r"\b(sk|pk|rk|key|api|ant|org|sess)[-_][A-Za-z0-9*._\-]{6,}", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_MAX_MESSAGE = 300


def scrub(text: str, key: str | None = None) -> str:
    """`text` without the key, anything key-shaped, or bearer tokens; at most 300 characters."""
    if key:
        text = text.replace(key, "<redacted>")
    text = _BEARER.sub(r"\1<redacted>", _KEYISH.sub("<redacted>", text))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _duration(value: str) -> float | None:
    """'20ms', '1s', '6m0s', '1h2m3.5s' (OpenAI's x-ratelimit-reset-*) -> seconds."""
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _seconds_until(stamp: str) -> float | None:
    """An RFC 3339 or HTTP date -> seconds from now (Anthropic's *-reset, Retry-After dates)."""
    try:
        from datetime import datetime

        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(stamp).timestamp()
        except (TypeError, ValueError):
            return None
    return max(0.0, moment - time.time())


def retry_after(headers: Mapping[str, str]) -> float | None:
    """How long the provider asked us to wait, in seconds (the most explicit header wins)."""
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        try:
            return max(0.0, float(h["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in h:
        value = h["retry-after"].strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            found = _seconds_until(value)
            if found is not None:
                return found
    waits = []
    for name, value in h.items():
        if name.startswith("x-ratelimit-reset"):
            waits.append(_duration(value))
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            waits.append(_seconds_until(value))
    known = [w for w in waits if w is not None]
    return max(known) if known else None


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(type, code, message) from an OpenAI- or Anthropic-shaped error body."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return (
                str(err.get("type") or ""),
                str(err.get("code") or ""),
                str(err.get("message") or ""),
            )
        if isinstance(err, str):
            return "", "", err
    return "", "", str(body or "")[:_MAX_MESSAGE]


_CONTEXT_PATTERNS = [
    # OpenAI: "maximum context length is 8192 tokens. However, your messages resulted in 9000"
    re.compile(r"maximum context length is (\d+) tokens.*?resulted in (\d+) tokens", re.S),
    # Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
    re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum"),
    # llama.cpp / vLLM style: "requested 9000 tokens ... context of 8192"
    re.compile(r"(\d+) tokens.*?context (?:length|window|size) (?:of )?(\d+)", re.S),
]


# A model the provider does not serve: OpenAI's `model_not_found` ("The model `x` does not
# exist"), vLLM ("The model `x` does not exist."), Ollama ("model 'x' not found, try pulling it
# first"), LiteLLM's proxy ("Invalid model name passed in model=x"), OpenRouter ("x is not a valid
# model ID"). Not past the end of a sentence (a dot and a space), so "This model's maximum
# context length is 8192 tokens. However..." is not one; a dot in a name ("llama-3.1") is.
_NO_MODEL = re.compile(
    r"model_not_found|invalid model|unknown model|no such model|not a valid model"
    r"|\bmodel\b(?:[^.]|\.(?!\s))*"
    r"\b(?:not found|does not exist|is not (?:available|supported|served))",
    re.IGNORECASE,
)


def _no_model(status: int, etype: str, lowered: str) -> bool:
    if status not in (400, 404, 422):
        return False
    # Anthropic: 404 not_found_error "model: claude-x"
    return bool(_NO_MODEL.search(lowered)) or (etype == "not_found_error" and "model" in lowered)


def _context_numbers(message: str) -> dict[str, int] | None:
    for i, pattern in enumerate(_CONTEXT_PATTERNS):
        match = pattern.search(message)
        if match:
            a, b = int(match.group(1)), int(match.group(2))
            limit, tokens = (a, b) if i == 0 else (b, a)
            return {"limit_tokens": limit, "prompt_tokens": tokens}
    return None


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    provider: str,
    key: str | None = None,
) -> ProviderFailure:
    """The failure an HTTP error response means."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    try:
        parsed: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    etype, code, raw_message = _error_fields(parsed)
    message = scrub(raw_message, key) or f"HTTP {status}"
    wait = retry_after(headers)
    lowered = f"{etype} {code} {raw_message}".lower()
    kind: FailureKind
    details: dict[str, Any] = {}
    if "insufficient_quota" in lowered or "billing" in lowered or "credit balance" in lowered:
        kind = "quota"
    elif status == 429:
        kind = "rate_limited"
    elif status in (401, 403):
        kind = "auth"
    elif status == 402:
        kind = "quota"
    elif status in (503, 529) or "overloaded" in lowered:
        kind = "overloaded"
    elif status >= 500:
        kind = "server_error"
    elif status == 413 or any(
        mark in lowered
        for mark in (
            "context_length",
            "too long",
            "context size",
            "context window",
            "maximum context",
        )
    ):
        kind = "context_too_long"
        details = _context_numbers(raw_message) or {}
    elif _no_model(status, etype, lowered):
        kind = "model_not_found"
    else:
        kind = "bad_request"
    label = " ".join(x for x in (etype, code) if x)
    return ProviderFailure(
        kind,
        f"{provider}: HTTP {status}{f' {label}' if label else ''}: {message}",
        status=status,
        retry_after_s=wait,
        details=details,
        scope=_scope(kind, status, lowered),
    )


def _scope(kind: FailureKind, status: int, lowered: str) -> Scope | None:
    """A plain 503 is the server's ("Service Unavailable"); an overload that says so (529,
    `overloaded_error`) is the model's. Otherwise the kind decides (types.MODEL_SCOPED)."""
    if kind == "overloaded" and status == 503 and "overload" not in lowered:
        return "provider"
    return None


def from_transport(exc: httpx.HTTPError, *, provider: str, started: bool) -> ProviderFailure:
    """The failure an httpx exception means (`started`: output had already been streamed)."""
    what = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        # Not reaching the server is the provider's; a server slow to answer is slow for the
        # model it runs (a proxy's other models may be quick).
        connecting = isinstance(exc, httpx.ConnectTimeout)
        return ProviderFailure(
            "timeout",
            f"{provider}: timed out {'connecting' if connecting else 'waiting'} ({what})",
            started=started,
            scope="provider" if connecting else "model",
        )
    if isinstance(exc, httpx.ConnectError):
        return ProviderFailure(
            "connection", f"{provider}: cannot connect ({scrub(str(exc))})", started=started
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        kind: FailureKind = "stream_broken" if started else "connection"
        return ProviderFailure(kind, f"{provider}: the connection broke ({what})", started=started)
    return ProviderFailure("connection", f"{provider}: {what}: {scrub(str(exc))}", started=started)
