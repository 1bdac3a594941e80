"""The built-in `local` model: deterministic, offline, and labelled as such.

It answers a user message `tool: <name> <json object>` with exactly that one tool call, a tool
result with a short text that quotes it, and anything else with text that echoes the message.
Every text starts with "(local model)", and the completion says `local: true`, so nobody takes
it for a real model. Its token counts are the gateway's estimate. It streams word by word, like
a real one, so the whole path (deltas, final message) runs with no network.
"""

from __future__ import annotations

import hashlib
import json
import re

import httpx

from tek_actors.providers.adapters.base import Adapter, OnDelta, Reply, Target
from tek_actors.providers.tokens import estimate_tokens
from tek_actors.providers.types import Completion, ModelRequest, ToolCall, Usage

__all__ = ["LABEL", "LocalAdapter"]

LABEL = "(local model)"
_TOOL = re.compile(r"^tool:\s*([A-Za-z0-9_-]+)\s*(\{.*\})\s*$", re.S)
_QUOTE_MAX = 500


class LocalAdapter(Adapter):
    kind = "local"

    def call(
        self, http: httpx.Client, target: Target, request: ModelRequest, on_delta: OnDelta
    ) -> Completion:
        reply = Reply(target, on_delta)
        last = request.messages[-1]
        calls: list[ToolCall] = []
        if last.role == "tool":
            quoted = (
                last.content if len(last.content) <= _QUOTE_MAX else last.content[:_QUOTE_MAX] + "…"
            )
            text = f'{LABEL} The tool returned: "{quoted}"'
        else:
            match = _TOOL.match(last.content.strip()) if last.role == "user" else None
            arguments = _object(match.group(2)) if match else None
            if match and arguments is not None:
                name = match.group(1)
                seed = f"{len(request.messages)}:{name}:{json.dumps(arguments, sort_keys=True)}"
                call_id = "local-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
                calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
                text = ""
            else:
                text = f"{LABEL} You said: {last.content}"
        for piece in re.findall(r"\S+\s*|\s+", text):
            reply.emit(piece)
        prompt = sum(estimate_tokens(m.content) for m in request.messages)
        return Completion(
            text=text,
            tool_calls=calls,
            usage=Usage(input_tokens=prompt, output_tokens=estimate_tokens(text)),
            finish_reason="tool_calls" if calls else "stop",
            model=target.alias,
            provider=target.provider,
            model_id=target.model_id,
            local=True,
        )


def _object(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
