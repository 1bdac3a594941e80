"""Anthropic Messages, streamed.

Named server-sent events: `message_start` (input usage), per content block `content_block_start`
/ `content_block_delta` (`text_delta`, or `input_json_delta` pieces of a `tool_use`'s input) /
`content_block_stop`, then `message_delta` (stop reason, output usage) and `message_stop`.
`error` events can come mid-stream (`overloaded_error`). A server that ignores `stream` answers
one `message` body (its `content` blocks) or an `error` one. System messages go to `system`; tool
results are `tool_result` blocks in a user turn, paired with their `tool_use` by id; consecutive
turns of one role are merged, as the API wants them to alternate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tek_actors.providers.adapters.base import Adapter, OnDelta, Reply, Target, sse_events
from tek_actors.providers.failures import scrub
from tek_actors.providers.types import Completion, Message, ModelRequest, ProviderFailure, Usage

__all__ = ["ANTHROPIC_VERSION", "AnthropicAdapter"]

ANTHROPIC_VERSION = "2023-06-01"
_DEFAULT_MAX_TOKENS = 4096
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls"}
_FINISH |= {"max_tokens": "length", "refusal": "content_filter"}
_ERROR_KINDS = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limited",
    "api_error": "server_error",
    "authentication_error": "auth",
    "permission_error": "auth",
}


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
                "is_error": message.is_error,
            }
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return blocks


def _turns(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


class AnthropicAdapter(Adapter):
    kind = "anthropic"

    def call(
        self, http: httpx.Client, target: Target, request: ModelRequest, on_delta: OnDelta
    ) -> Completion:
        system, turns = _turns(request.messages)
        body: dict[str, Any] = {
            "model": target.model_id,
            "messages": turns,
            "max_tokens": request.max_tokens or target.max_output_tokens or _DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if target.key:
            headers["x-api-key"] = target.key
        url = f"{(target.base_url or 'https://api.anthropic.com').rstrip('/')}/v1/messages"
        return self.stream(http, Reply(target, on_delta), url, headers, body, _read, _read_body)


def _error(err: dict[str, Any], reply: Reply, where: str) -> ProviderFailure:
    kind = _ERROR_KINDS.get(str(err.get("type")), "server_error")
    return ProviderFailure(
        kind,  # type: ignore[arg-type]
        f"{reply.target.provider}: error in the {where}: {err.get('type')}: "
        + scrub(str(err.get("message")), reply.target.key),
    )


def _read_body(body: dict[str, Any], reply: Reply) -> None:
    """A `message` body: the whole reply at once."""
    if body.get("type") == "error" or isinstance(body.get("error"), dict):
        raise _error(body.get("error") or {}, reply, "answer")
    usage = body.get("usage") or {}
    reply.usage = Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
    )
    calls = 0
    for block in body.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            reply.emit(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            reply.call_part(
                calls,
                id=block.get("id") or "",
                name=block.get("name") or "",
                arguments=json.dumps(block.get("input") or {}),
            )
            calls += 1
    stop = body.get("stop_reason")
    if stop:
        reply.finish = _FINISH.get(stop, "stop")
    reply.done = True


def _read(lines: Iterator[str], reply: Reply) -> None:
    provider = reply.target.provider
    tool_blocks: dict[int, int] = {}  # content block index -> tool call index
    input_tokens = 0
    for name, data in sse_events(lines):
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise ProviderFailure("stream_broken", f"{provider}: an event is not JSON") from None
        kind = event.get("type", name)
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            input_tokens = int(usage.get("input_tokens") or 0)
            reply.usage = Usage(input_tokens=input_tokens)
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = tool_blocks[int(event.get("index", 0))] = len(tool_blocks)
                reply.call_part(position, id=block.get("id") or "", name=block.get("name") or "")
            elif block.get("text"):
                reply.emit(block["text"])
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                reply.emit(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                found = tool_blocks.get(int(event.get("index", 0)))
                if found is not None:
                    reply.call_part(found, arguments=delta.get("partial_json") or "")
        elif kind == "message_delta":
            stop = (event.get("delta") or {}).get("stop_reason")
            if stop:
                reply.finish = _FINISH.get(stop, "stop")
            out = (event.get("usage") or {}).get("output_tokens")
            if out is not None:
                reply.usage = Usage(input_tokens=input_tokens, output_tokens=int(out))
        elif kind == "message_stop":
            reply.done = True
            return
        elif kind == "error":
            raise _error(event.get("error") or {}, reply, "stream")
