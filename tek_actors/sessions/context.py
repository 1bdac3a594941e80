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


def pairs(state: SessionState) -> list[tuple[str, list[Message]]]:
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
        messages = [Message(role="user", content=entry.text)]
        answered = {a.tool_call_id for a in answers.get(entry.id, []) if a.role == "tool"}
        for answer in answers.get(entry.id, []):
            if answer.role == "tool":
                messages.append(
                    Message(
                        role="tool",
                        content=answer.text,
                        tool_call_id=answer.tool_call_id,
                        is_error=answer.status != "executed",
                    )
                )
                continue
            # a call without a result (never, unless a turn was cut) would be refused
            calls = [ToolCall(**c) for c in answer.tool_calls if c["id"] in answered]
            if answer.text or calls:
                messages.append(Message(role="assistant", content=answer.text, tool_calls=calls))
        out.append((entry.id, messages))
    return out


def context(state: SessionState, turn: str) -> list[Message]:
    """What turn `turn` sends: every pair up to and including its own (so far)."""
    out: list[Message] = []
    for user_id, messages in pairs(state):
        out += messages
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
    costs = [(uid, math.ceil(raw_tokens(ms, estimate) * ratio)) for uid, ms in pairs(state)]
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
