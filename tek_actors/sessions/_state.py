"""A session's state: its entries (the conversation as `sessions.get` shows it), its queue of
turns, what switches left out, the running tool round, its calibration and its file-write
intents. Pure data and the one pure step of `ModelSessionActor.apply` that is more than a copy:
a tool result joining the conversation in call order.

What a snapshot holds is `SessionState.model_dump(mode="json")`; rehydration validates it back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tek_actors.runtime.effects import IntentLog

__all__ = ["Checkpoint", "Entry", "Round", "SessionState", "apply_tool_result"]


class Entry(BaseModel):
    """One line of the conversation."""

    id: str
    role: Literal["user", "assistant", "tool", "error"]
    text: str = ""  # for a tool result: the JSON the model sees
    at: float
    turn: str | None = None  # for an answer or a tool result: the user message it answers
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None  # a tool result: the model's id of the call
    name: str | None = None  # a tool result: the tool
    status: str | None = None  # a tool result: executed, failed, denied, expired, unknown, error
    approval: str | None = None  # a tool result: its approval's id
    model: str | None = None
    provider: str | None = None
    usage: dict[str, int] | None = None
    fallback_from: list[str] = Field(default_factory=list)
    incomplete: bool = False
    local: bool = False
    error: dict[str, Any] | None = None


class Checkpoint(BaseModel):
    """What a switch changed, so that undo_switch can put it back."""

    model: str | None
    dropped: list[str]


class Round(BaseModel):
    """The tool calls of one answer: how many, and the results not yet in the conversation
    (they join it in call order: result i+1 waits for result i)."""

    entry: str
    turn: str
    size: int
    appended: int = 0
    waiting: dict[int, Entry] = {}


class SessionState(BaseModel):
    id: str = ""
    model: str | None = None
    # Factories, not shared defaults: pydantic deep-copies a default at every construction
    entries: list[Entry] = Field(default_factory=list)
    queue: list[str] = Field(default_factory=list)  # waiting for (or in) their turn, oldest first
    dropped: list[str] = Field(default_factory=list)  # user messages left out of the context
    checkpoints: list[Checkpoint] = Field(default_factory=list)  # one per switch, newest last
    round: Round | None = None  # the tool round of the running turn
    calibration: dict[str, float] = Field(default_factory=dict)  # alias -> reported / estimated
    intents: IntentLog = Field(default_factory=IntentLog)  # tool calls' file writes (effects.py)


def apply_tool_result(state: SessionState, data: dict[str, Any]) -> SessionState:
    current = state.round
    if current is None or current.entry != data["entry"]:
        return state
    entry = Entry.model_validate({k: v for k, v in data.items() if k in Entry.model_fields})
    waiting = {**current.waiting, data["index"]: entry}
    entries, appended = list(state.entries), current.appended
    while appended in waiting:
        entries.append(waiting.pop(appended))
        appended += 1
    new_round = current.model_copy(update={"appended": appended, "waiting": waiting})
    return state.model_copy(update={"entries": entries, "round": new_round})
