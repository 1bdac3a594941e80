"""OpenAI Chat Completions, streamed: OpenAI itself, and Ollama's `/v1`, vLLM, llama.cpp's
server and LM Studio, which speak the same API.

Server-sent `data:` chunks ending in `data: [DONE]`; text in `choices[0].delta.content`; tool
calls as deltas keyed by `index` whose `function.arguments` is a JSON string split across
chunks; usage in a last chunk with no choices (asked for with `stream_options.include_usage`).
A server that ignores `stream` answers one `chat.completion` body (`choices[0].message`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tek_actors.providers.adapters.base import Adapter, OnDelta, Reply, Target, sse_events
from tek_actors.providers.failures import scrub
from tek_actors.providers.types import (
    Completion,
    FailureKind,
    Message,
    ModelRequest,
    ProviderFailure,
    Usage,
)

__all__ = ["OpenAIAdapter"]

_FINISH = {"stop": "stop", "tool_calls": "tool_calls", "function_call": "tool_calls"}
_FINISH |= {"length": "length", "content_filter": "content_filter"}


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return out


class OpenAIAdapter(Adapter):
    kind = "openai"

    def call(
        self, http: httpx.Client, target: Target, request: ModelRequest, on_delta: OnDelta
    ) -> Completion:
        body: dict[str, Any] = {
            "model": target.model_id,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        max_tokens = request.max_tokens or target.max_output_tokens
        if max_tokens:
            body["max_tokens"] = max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if target.key:
            headers["authorization"] = f"Bearer {target.key}"
        url = f"{(target.base_url or 'https://api.openai.com/v1').rstrip('/')}/chat/completions"
        return self.stream(http, Reply(target, on_delta), url, headers, body, _read, _read_body)


def _stream_error(err: dict[str, Any], reply: Reply, where: str) -> ProviderFailure:
    overloaded = "overload" in str(err.get("type", ""))
    kind: FailureKind = "overloaded" if overloaded else "server_error"
    message = scrub(str(err.get("message")), reply.target.key)
    return ProviderFailure(kind, f"{reply.target.provider}: error in the {where}: {message}")


def _usage(usage: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


def _read_body(body: dict[str, Any], reply: Reply) -> None:
    """A `chat.completion` body: the whole reply at once."""
    if isinstance(body.get("error"), dict):
        raise _stream_error(body["error"], reply, "answer")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderFailure("server_error", f"{reply.target.provider}: the answer has no choices")
    if isinstance(body.get("usage"), dict):
        reply.usage = _usage(body["usage"])
    message = choices[0].get("message") or {}
    if isinstance(message.get("content"), str):
        reply.emit(message["content"])
    for index, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        reply.call_part(
            index,
            id=call.get("id") or "",
            name=fn.get("name") or "",
            arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
        )
    if choices[0].get("finish_reason"):
        reply.finish = _FINISH.get(choices[0]["finish_reason"], "stop")
    reply.done = True


def _read(lines: Iterator[str], reply: Reply) -> None:
    provider = reply.target.provider
    for _, data in sse_events(lines):
        if data.strip() == "[DONE]":
            reply.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise ProviderFailure(
                "stream_broken", f"{provider}: a stream chunk is not JSON"
            ) from None
        if isinstance(chunk.get("error"), dict):
            raise _stream_error(chunk["error"], reply, "stream")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            reply.usage = _usage(usage)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                reply.emit(content)
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                reply.call_part(
                    int(call.get("index", 0)),
                    id=call.get("id") or "",
                    name=fn.get("name") or "",
                    arguments=fn.get("arguments") or "",
                )
            if choice.get("finish_reason"):
                reply.finish = _FINISH.get(choice["finish_reason"], "stop")
