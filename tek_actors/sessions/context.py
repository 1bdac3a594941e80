"""What a session sends its model, how big that is, and what a switch of model would drop.

Pure functions of a session's state: the conversation as provider messages (each answer, tool
calls and tool results right after the user message it answers; left-out messages and error
entries not at all), its size in tokens, and the plan of a switch.

Tokens are estimated (the estimator is pluggable: bytes / 4 by default; 4 more per message; the
tools' definitions count too) and calibrated per model alias: every answer records the estimate
of what it was sent and the input tokens the provider reported, and the ratio between them
(smoothed, within 0.25..4) scales later estimates for that alias. A model that counts 1.3
tokens per 4 bytes is soon planned as such. (The `local` model counts with the estimator
itself: there is nothing to learn from it.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tek_actors.config import Config
from tek_actors.errors import InvalidValue
from tek_actors.providers import Message, ToolCall, ToolSpec
from tek_actors.providers.catalog import context_window

if TYPE_CHECKING:
    from tek_actors.sessions.session import Entry, SessionState

__all__ = ["Estimator", "calibrated", "context", "pairs", "plan", "raw_tokens", "tools_tokens"]

Estimator = Callable[[str], int]
MESSAGE_OVERHEAD = 4  # tokens a provider spends on a message's role and framing
RATIO_BOUNDS = (0.25, 4.0)
SMOOTHING = 0.3  # the weight of the newest observation


# One message of the context, before it is a Message: role, content, the calls it makes (an
# answer), the call it answers and whether that failed (a tool result). A turn sizes the whole
# conversation and sends part of it: plain tuples are sized without building the messages.
_Part = tuple[str, str, list[dict[str, Any]], str | None, bool]


def _parts(state: SessionState) -> list[tuple[str, list[_Part]]]:
    """The context as (user message id, [that message, its answers]) in conversation order (a
    message sent during a turn is logged before that turn's answer, but the model sees each
    answer right after the message it answers)."""
    answers: dict[str, list[Entry]] = {}
    for entry in state.entries:
        if entry.role in ("assistant", "tool") and entry.turn is not None:
            answers.setdefault(entry.turn, []).append(entry)
    dropped = set(state.dropped)
    out = []
    for entry in state.entries:
        if entry.role != "user" or entry.id in dropped:
            continue
        parts: list[_Part] = [("user", entry.text, [], None, False)]
        its = answers.get(entry.id, [])
        answered = {a.tool_call_id for a in its if a.role == "tool"}
        for answer in its:
            if answer.role == "tool":
                failed = answer.status != "executed"
                parts.append(("tool", answer.text, [], answer.tool_call_id, failed))
                continue
            # a call without a result (never, unless a turn was cut) would be refused
            calls = [c for c in answer.tool_calls if c["id"] in answered]
            if answer.text or calls:
                parts.append(("assistant", answer.text, calls, None, False))
        out.append((entry.id, parts))
    return out


def _message(part: _Part) -> Message:
    role, content, calls, call_id, failed = part
    tool_calls = [ToolCall(**c) for c in calls]
    return Message(
        role=role,  # type: ignore[arg-type]
        content=content,
        tool_calls=tool_calls,  # given, even empty: a default list is deep-copied per message
        tool_call_id=call_id,
        is_error=failed,
    )


def _size(parts: list[_Part], estimate: Estimator) -> int:
    """raw_tokens of these messages, from their parts."""
    total = 0
    for _, content, calls, _, _ in parts:
        total += estimate(content) + MESSAGE_OVERHEAD
        for call in calls:
            arguments = json.dumps(call.get("arguments", {}), sort_keys=True)
            total += estimate(call["name"] + arguments)
    return total


def pairs(state: SessionState) -> list[tuple[str, list[Message]]]:
    """The context as (user message id, [that message, its answers]) in conversation order."""
    return [(user_id, [_message(p) for p in parts]) for user_id, parts in _parts(state)]


def context(state: SessionState, turn: str) -> list[Message]:
    """What turn `turn` sends: every pair up to and including its own (so far)."""
    out: list[Message] = []
    for user_id, parts in _parts(state):
        out += [_message(p) for p in parts]
        if user_id == turn:
            break
    return out


def raw_tokens(messages: list[Message], estimate: Estimator) -> int:
    total = 0
    for m in messages:
        total += estimate(m.content) + MESSAGE_OVERHEAD
        for call in m.tool_calls:
            total += estimate(call.name + json.dumps(call.arguments, sort_keys=True))
    return total


def tools_tokens(specs: list[ToolSpec], estimate: Estimator) -> int:
    """What the tools' definitions cost: a provider counts them as input too."""
    return estimate(json.dumps([s.model_dump(mode="json") for s in specs], sort_keys=True))


def calibrated(ratios: dict[str, float], alias: str, observed: float) -> dict[str, float]:
    """`ratios` after an answer from `alias` whose reported input was `observed` times the
    estimate."""
    low, high = RATIO_BOUNDS
    observed = min(high, max(low, observed))
    old = ratios.get(alias)
    new = observed if old is None else (1 - SMOOTHING) * old + SMOOTHING * observed
    return {**ratios, alias: round(new, 4)}


def plan(
    state: SessionState,
    config: Config,
    target: str | None,
    estimate: Estimator,
    tools: list[ToolSpec],
) -> dict[str, Any]:
    """What switching to `target` (None: the session's own model) would mean, with `tools`
    offered to it (their definitions take room in the window too)."""
    alias = target or state.model or config.default_model
    models = config.models
    if alias not in models:
        raise InvalidValue(
            f"there is no model alias {alias!r}",
            details={"path": "model", "expected": f"one of {sorted(models)}"},
        )
    window = context_window(models[alias])
    ratio = state.calibration.get(alias, 1.0)
    costs = [(uid, math.ceil(_size(ps, estimate) * ratio)) for uid, ps in _parts(state)]
    fixed = math.ceil(tools_tokens(tools, estimate) * ratio)
    tokens = fixed + sum(t for _, t in costs)
    drop, left = [], tokens
    for uid, cost in costs[:-1]:  # the newest message always stays
        if left <= window:
            break
        drop.append(uid)
        left -= cost
    return {
        "model": alias,
        "tokens": tokens,
        "target_window": window,
        "fits": tokens <= window,
        "calibration": ratio,
        "options": [
            {"mode": "carry_over", "drop": drop, "tokens_after": left, "fits": left <= window},
            {
                "mode": "fresh",
                "drop": [uid for uid, _ in costs],
                "tokens_after": fixed,
                "fits": fixed <= window,
            },
        ],
    }
