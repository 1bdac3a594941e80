"""The wire shapes of the fake providers: what OpenAI and Anthropic answer, as bodies and as
server-sent events, errors included. Pure functions of the request and the script; the server
that sends them is in fake_providers.py."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_PHRASES = {status.value: status.phrase for status in HTTPStatus} | {529: "Overloaded"}


class _Chunk(NamedTuple):
    """One server-sent event; `content` marks text and tool-argument deltas."""

    event: str | None
    data: dict[str, Any] | str
    content: bool = False

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else _dumps(self.data)
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {data}\n\n".encode()


@dataclass(frozen=True)
class _Reply:
    id: str
    model: str
    text: str
    tool_calls: list[dict[str, Any]]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    midstream_error: dict[str, Any] | None


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _invalid(
    kind: str, headers: dict[str, str], body: dict[str, Any] | None
) -> tuple[int, str] | None:
    """The (status, message) the real API would refuse this request with, if any."""
    if kind == "anthropic" and "x-api-key" not in headers:
        return 401, "x-api-key header is required"
    if kind == "anthropic" and "anthropic-version" not in headers:
        return 400, "anthropic-version: header is required"
    if body is None:
        return 400, "the body must be a JSON object"
    required = ("model", "messages", "max_tokens") if kind == "anthropic" else ("model", "messages")
    missing = [key for key in required if key not in body]
    if missing:
        return 400, f"{missing[0]}: Field required"
    if not isinstance(body["messages"], list):
        return 400, "messages: Input should be a valid list"
    return None


def _error(
    kind: str,
    status: int,
    message: str | None = None,
    type_: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """An error body in the provider's own format, typed by status unless told otherwise."""
    message = message or _PHRASES.get(status, f"error {status}")
    if kind == "openai":
        default = _OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        type_ = type_ or default[0]
        code = code or default[1]
        return {
            "error": {
                "message": message,
                "type": type_,
                "param": None,
                "code": code,
            }
        }
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    type_ = type_ or _ANTHROPIC_ERRORS.get(status, fallback)
    return {"type": "error", "error": {"type": type_, "message": message}}


_MODELS = {
    "object": "list",
    "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
}


def _text_of(content: object) -> str:
    """The text of a message's content: a string, or text parts/blocks (and tool results)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "tool_result":
            texts.append(_text_of(part.get("content", "")))
    return " ".join(texts)


def _echo(kind: str, messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if kind == "anthropic" and isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            return f"tool result: {_text_of(results[0].get('content', ''))}"
    return f"echo: {_text_of(content)}"


def _reply(kind: str, body: dict[str, Any], script: dict[str, Any]) -> _Reply:
    messages: list[Any] = body["messages"]
    text = script.get("text", "" if "tool_calls" in script else _echo(kind, messages))
    prefix = "call_" if kind == "openai" else "toolu_"
    calls = [
        {
            "id": call.get("id") or f"{prefix}{uuid.uuid4().hex[:24]}",
            "name": call["name"],
            "arguments": call.get("arguments", {}),
        }
        for call in script.get("tool_calls", [])
    ]
    if kind == "openai":
        stop_reason = "tool_calls" if calls else "stop"
    else:
        stop_reason = "tool_use" if calls else "end_turn"
    usage = script.get("usage", {})
    chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    midstream = script.get("midstream_error")
    return _Reply(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if kind == "openai"
        else f"msg_{uuid.uuid4().hex[:24]}",
        model=str(body["model"]),
        text=text,
        tool_calls=calls,
        stop_reason=script.get("finish_reason", stop_reason),
        input_tokens=usage.get("input_tokens", chars // 4),
        output_tokens=usage.get("output_tokens", len(text) // 4 + 1),
        midstream_error=None
        if midstream is None
        else {"type": "api_error", "message": "Internal server error", **midstream},
    )


def _words(text: str) -> list[str]:
    """The text in pieces of one word each (with the spaces that follow it)."""
    return re.findall(r"\S+\s*|\s+", text)


def _pieces(text: str, parts: int = 3) -> list[str]:
    """The text in up to `parts` pieces (two or more when it has two characters or more)."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _before_drop(chunks: list[_Chunk], drop_after: int) -> list[_Chunk]:
    """The chunks sent before the connection drops: up to the `drop_after`-th content chunk,
    and never the terminator (the last chunk)."""
    content = [i for i, chunk in enumerate(chunks) if chunk.content]
    if drop_after == 0 and content:
        return chunks[: content[0]]
    if 0 < drop_after <= len(content):
        return chunks[: content[drop_after - 1] + 1]
    return chunks[:-1]


def _openai_tool_calls(reply: _Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for call in reply.tool_calls
    ]


def _openai_usage(reply: _Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _openai_completion(reply: _Reply) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text or (None if reply.tool_calls else ""),
    }
    if reply.tool_calls:
        message["tool_calls"] = _openai_tool_calls(reply)
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.stop_reason}
        ],
        "usage": _openai_usage(reply),
    }


def _openai_chunks(reply: _Reply, include_usage: bool) -> list[_Chunk]:
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
        payload = {
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": reply.model,
            "choices": choices,
        }
        return {**payload, "usage": usage} if include_usage else payload

    def delta(delta: dict[str, Any], content: bool = False, finish: str | None = None) -> _Chunk:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _Chunk(None, chunk([choice]), content)

    chunks = [delta({"role": "assistant", "content": ""})]
    chunks += [delta({"content": piece}, content=True) for piece in _words(reply.text)]
    for index, call in enumerate(_openai_tool_calls(reply)):
        function = call["function"]
        start = {**call, "function": {"name": function["name"], "arguments": ""}}
        chunks.append(delta({"tool_calls": [{"index": index, **start}]}))
        for piece in _pieces(function["arguments"]):
            part = {"index": index, "function": {"arguments": piece}}
            chunks.append(delta({"tool_calls": [part]}, content=True))
    if reply.midstream_error:
        error = {"message": reply.midstream_error["message"], "type": reply.midstream_error["type"]}
        return [*chunks, _Chunk(None, {"error": {**error, "param": None, "code": None}})]
    chunks.append(delta({}, finish=reply.stop_reason))
    if include_usage:
        chunks.append(_Chunk(None, chunk([], _openai_usage(reply))))
    return [*chunks, _Chunk(None, "[DONE]")]


def _anthropic_blocks(reply: _Reply) -> list[dict[str, Any]]:
    text = [{"type": "text", "text": reply.text}] if reply.text else []
    tools = [
        {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["arguments"]}
        for call in reply.tool_calls
    ]
    return text + tools


def _anthropic_message(reply: _Reply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": _anthropic_blocks(reply),
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _anthropic_chunks(reply: _Reply) -> list[_Chunk]:
    def event(name: str, content: bool = False, **fields: Any) -> _Chunk:
        return _Chunk(name, {"type": name, **fields}, content)

    message = {
        **_anthropic_message(reply),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    chunks = [event("message_start", message=message), event("ping")]
    for index, block in enumerate(_anthropic_blocks(reply)):
        if block["type"] == "text":
            start = {**block, "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _words(block["text"])]
        else:
            start = {**block, "input": {}}
            pieces = _pieces(json.dumps(block["input"]))
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        chunks.append(event("content_block_start", index=index, content_block=start))
        chunks += [event("content_block_delta", True, index=index, delta=d) for d in deltas]
        chunks.append(event("content_block_stop", index=index))
    if reply.midstream_error:
        return [*chunks, event("error", error=reply.midstream_error)]
    stop = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    chunks.append(event("message_delta", delta=stop, usage={"output_tokens": reply.output_tokens}))
    return [*chunks, event("message_stop")]
