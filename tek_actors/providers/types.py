"""One model of a model call, whatever the provider: what sessions send and what they get back.

Adapters translate it to and from each provider's wire format; nothing above them ever sees an
OpenAI or Anthropic payload. Failures are `ProviderFailure`s with a `kind` that says what to do
about them (retry, fail over, open the breaker, disable the provider, or give up).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from tek_actors.wire import WireModel

__all__ = [
    "CALLER_FAULTS",
    "DISABLING",
    "MODEL_SCOPED",
    "TRANSIENT",
    "CompletePayload",
    "Completion",
    "FailureKind",
    "Message",
    "ModelRequest",
    "NamePayload",
    "ProviderFailure",
    "Scope",
    "ToolCall",
    "ToolSpec",
    "Usage",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Frozen):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    arguments: dict[str, Any] = {}


class Message(_Frozen):
    role: Literal["system", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=4 << 20)] = ""
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] = []  # assistant only
    tool_call_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None  # tool only
    is_error: bool = False  # a tool result that reports a failure


class ToolSpec(_Frozen):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
    description: Annotated[str, Field(max_length=8192)] = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}


class ModelRequest(_Frozen):
    """What a caller asks of a model alias (the alias picks provider, model id and fallbacks)."""

    messages: Annotated[list[Message], Field(min_length=1, max_length=100_000)]
    tools: Annotated[list[ToolSpec], Field(max_length=256)] = []
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None


class Usage(_Frozen):
    input_tokens: int = 0
    output_tokens: int = 0


FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "error"]


class Completion(_Frozen):
    """A reply. `incomplete`: the stream broke after text had been streamed; `text` is what
    arrived and `error` says why it stopped (no retry: it would duplicate what was shown)."""

    text: str = ""
    tool_calls: list[ToolCall] = []
    usage: Usage = Usage()
    finish_reason: FinishReason = "stop"
    model: str = ""  # the alias that answered
    provider: str = ""
    model_id: str = ""
    fallback_from: list[str] = []  # aliases tried before, in order
    incomplete: bool = False
    error: str | None = None
    local: bool = False  # the built-in offline model answered (labelled as such)


FailureKind = Literal[
    "rate_limited",  # 429: opens the model's breaker for max(Retry-After, 60 s)
    "overloaded",  # 529 / 503 overloaded: retried, counts toward the model's breaker
    "model_not_found",  # the provider does not serve the model: its breaker opens at once
    "server_error",  # 5xx
    "timeout",  # connecting: the provider's; waiting for the reply: the model's
    "connection",  # refused, reset, DNS, TLS
    "auth",  # 401/403: provider disabled until its configuration changes
    "quota",  # insufficient_quota / billing: disabled too, never retried
    "bad_request",  # other 4xx: never retried, never counted against the breaker
    "context_too_long",  # a bad request with numbers: never retried
    "stream_broken",  # the stream ended without its terminator
    "unconfigured",  # no key, no base_url: never sent
]

# Failures that say nothing bad about the provider's health.
CALLER_FAULTS = frozenset({"bad_request", "context_too_long"})
# Failures another try (here or elsewhere) can help with.
TRANSIENT = frozenset(
    {"rate_limited", "overloaded", "server_error", "timeout", "connection", "stream_broken"}
)
# Failures that disable the provider until its configuration changes.
DISABLING = frozenset({"auth", "quota", "unconfigured"})
# Failures of one model of a provider (a multi-model server, a proxy, a router answers for each
# model on its own): they move the breaker of (provider, model), never the provider's (a context
# overflow moves none: it is the caller's). The rest are the provider's (a server that cannot be
# reached, a key it refuses), and move its breaker.
MODEL_SCOPED = frozenset({"rate_limited", "overloaded", "model_not_found", "context_too_long"})

Scope = Literal["provider", "model"]


class ProviderFailure(Exception):
    """A failed call. `started`: text or a tool call had already been streamed (so no retry and
    no failover: the caller keeps `partial`). `scope`: whose breaker it moves, the provider's or
    the model's (by default from `kind`, see MODEL_SCOPED). Messages never contain keys or
    headers."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        started: bool = False,
        partial: Completion | None = None,
        details: dict[str, Any] | None = None,
        scope: Scope | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.scope: Scope = scope or ("model" if kind in MODEL_SCOPED else "provider")
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.started = started
        self.partial = partial
        self.details = details or {}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message, "scope": self.scope}
        if self.status is not None:
            out["status"] = self.status
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_s
        return {**out, **self.details}


# -- the wire payloads of providers.complete and providers.test ------------------------------


class CompletePayload(WireModel):
    model: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    messages: Annotated[list[Message], Field(min_length=1, max_length=100_000)]
    tools: Annotated[list[ToolSpec], Field(max_length=256)] = Field(default_factory=list)
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    stream: bool = False


class NamePayload(WireModel):
    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
