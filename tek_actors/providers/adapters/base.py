"""What every adapter shares: the call's target, the reply being assembled, the HTTP plumbing.

An adapter turns a `ModelRequest` into one streamed HTTP call and the stream into a
`Completion`, calling `on_delta(text)` for every piece of text as it arrives. It runs on a
provider's worker thread and blocks; it raises `ProviderFailure` and nothing else. A failure
after output was streamed carries `started=True` and the `partial` reply, so the caller keeps
what was shown instead of retrying (which would show it twice).

A server may ignore `stream: true` and answer with one JSON body (`application/json`; some
proxies and small servers do): that body is read as the whole reply, its text given to
`on_delta` in one piece.
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tek_actors.providers.failures import classify, from_transport
from tek_actors.providers.types import Completion, ModelRequest, ProviderFailure, ToolCall, Usage

__all__ = ["Adapter", "Reply", "Target", "sse_events"]

OnDelta = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the alias resolved to a provider and a model id."""

    alias: str
    provider: str
    kind: str
    model_id: str
    base_url: str | None
    key: str | None = field(repr=False)
    timeout_s: float
    max_output_tokens: int | None = None


class Reply:
    """The reply as it streams in: text pieces, tool calls by index, usage, the end."""

    def __init__(self, target: Target, on_delta: OnDelta) -> None:
        self.target = target
        self.on_delta = on_delta
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage = Usage()
        self.finish = "stop"
        self.done = False
        self.streamed = False  # output reached the caller: no retry, no failover from here

    def emit(self, text: str) -> None:
        if text:
            self.text.append(text)
            self.streamed = True
            self.on_delta(text)

    def call_part(self, index: int, *, id: str = "", name: str = "", arguments: str = "") -> None:
        call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        call["id"] = call["id"] or id
        call["name"] = call["name"] or name
        call["arguments"] += arguments
        self.streamed = True

    def tool_calls(self) -> list[ToolCall]:
        out = []
        for index in sorted(self.calls):
            call = self.calls[index]
            try:
                args = json.loads(call["arguments"]) if call["arguments"].strip() else {}
            except json.JSONDecodeError:
                args = {"_unparsed_arguments": call["arguments"]}
            if not isinstance(args, dict):
                args = {"_value": args}
            out.append(
                ToolCall(id=call["id"] or f"call_{index}", name=call["name"], arguments=args)
            )
        return out

    def completion(self, *, incomplete: bool = False, error: str | None = None) -> Completion:
        t = self.target
        return Completion(
            text="".join(self.text),
            tool_calls=[] if incomplete else self.tool_calls(),
            usage=self.usage,
            finish_reason="error" if incomplete else self.finish,  # type: ignore[arg-type]
            model=t.alias,
            provider=t.provider,
            model_id=t.model_id,
            incomplete=incomplete,
            error=error,
        )

    def broken(self, failure: ProviderFailure) -> ProviderFailure:
        """`failure`, marked with whether output was streamed and the partial reply."""
        failure.started = self.streamed
        if self.streamed:
            failure.partial = self.completion(incomplete=True, error=failure.message)
        return failure


class Adapter(abc.ABC):
    kind: str

    @abc.abstractmethod
    def call(
        self, http: httpx.Client, target: Target, request: ModelRequest, on_delta: OnDelta
    ) -> Completion:
        """One streamed call; raises ProviderFailure."""

    def stream(
        self,
        http: httpx.Client,
        reply: Reply,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any],
        read: Callable[[Iterator[str], Reply], None],
        read_body: Callable[[Any, Reply], None],
    ) -> Completion:
        """POST `body`, feed the response's lines to `read` (or, when the server answered with
        one JSON body instead of a stream, that body to `read_body`), and check it ended."""
        target = reply.target
        deadline = time.monotonic() + target.timeout_s
        try:
            with http.stream("POST", url, headers=headers, content=json.dumps(body)) as response:
                if response.status_code >= 400:
                    raise classify(
                        response.status_code,
                        response.headers,
                        response.read(),
                        provider=target.provider,
                        key=target.key,
                    )
                if _is_json(response):
                    read_body(_json_body(response.read(), target.provider), reply)
                else:
                    read(_within(response.iter_lines(), deadline, target.provider), reply)
        except httpx.HTTPError as exc:
            raise reply.broken(
                from_transport(exc, provider=target.provider, started=reply.streamed)
            ) from None
        except ProviderFailure as failure:
            raise reply.broken(failure) from None
        if not reply.done:
            raise reply.broken(
                ProviderFailure(
                    "stream_broken", f"{target.provider}: the stream ended before its end marker"
                )
            )
        return reply.completion()


def _within(lines: Iterator[str], deadline: float, provider: str) -> Iterator[str]:
    for line in lines:
        if time.monotonic() > deadline:
            raise ProviderFailure(
                "timeout", f"{provider}: the reply took longer than timeout_s", scope="model"
            )
        yield line


def _is_json(response: httpx.Response) -> bool:
    media = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _json_body(data: bytes, provider: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderFailure("server_error", f"{provider}: the answer is not a JSON object")
    return body


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per server-sent event; the name is "" when the event has none."""
    name, data = "", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield name, "\n".join(data)
