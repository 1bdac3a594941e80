"""Effects outside the journal: the intent is durable before the effect, the outcome after.

Starting a process, writing a file for a tool, calling an outside server: the journal cannot
undo these, and a crash between doing one and journaling it would leave the world changed with
no record (and a resend would do it again). So an actor that performs such an effect:

1. journals an *intent* (`effect.intended`): its id, the key of the request or tool call it
   serves, the kind and exactly what will be done; the effect starts only once that is durable;
2. performs the effect so that it carries the intent's id where the world keeps it (a process's
   folder and environment, a file's temp name), which lets a later boot find it;
3. journals the *outcome* (`effect.settled`: `done` with the effect's result, `failed` when it
   was refused before anything happened), usually in the same transaction as the domain event
   that records it (`proc.started`).

An intent still pending when its actor rehydrates belongs to an incarnation that is gone (the
owner performs effects on its own thread, so no live one can still be working on it). The owner
reconciles it from what the world shows, before it serves anything: `done` if the effect happened,
`not_started` if it provably did not (the key is free again: doing it now is its first time),
and `unknown` only where the world cannot tell. `unknown` is never re-run unless the effect is
idempotent. A request that comes again under the same key (an idem resend, a resumed tool call)
gets the intent's outcome (`IntentLog.find`), never a second effect.

Everything here is pure: the owner keeps an `IntentLog` in its state and folds the two events
into it with `apply_effect` from its own `apply`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from tek_actors.store import NewEvent

__all__ = [
    "INTENDED",
    "SETTLED",
    "Intent",
    "IntentLog",
    "IntentStatus",
    "apply_effect",
    "intended",
    "settled",
]

INTENDED = "effect.intended"
SETTLED = "effect.settled"
KEEP_SETTLED = 5000  # settled intents kept (oldest go first); pending ones are always kept

IntentStatus = Literal["pending", "done", "failed", "not_started", "unknown"]
FREE = frozenset({"failed", "not_started"})  # nothing happened: the key may be used again


class Intent(BaseModel):
    id: str
    kind: str  # "proc.spawn", "file.write", ...
    key: str | None = None  # the idem key or tool call it serves
    spec: dict[str, Any] = {}  # exactly what will be done (never a secret)
    boot: str = ""
    at: float = 0.0
    status: IntentStatus = "pending"
    outcome: dict[str, Any] | None = None

    @property
    def free(self) -> bool:
        """Nothing happened: a request under this key may do it now, for the first time."""
        return self.status in FREE


class IntentLog(BaseModel):
    items: dict[str, Intent] = {}
    by_key: dict[str, str] = {}  # key -> the newest intent's id

    def find(self, key: str | None) -> Intent | None:
        """The newest intent under `key` that still binds it (one that happened, may have
        happened, or is under way); None if the key is free."""
        if key is None:
            return None
        intent = self.items.get(self.by_key.get(key, ""))
        return None if intent is None or intent.free else intent

    def pending(self) -> list[Intent]:
        return [i for i in self.items.values() if i.status == "pending"]


def intended(
    intent_id: str,
    kind: str,
    spec: dict[str, Any],
    *,
    key: str | None,
    boot: str,
    at: float,
) -> NewEvent:
    data = {"id": intent_id, "kind": kind, "key": key, "spec": spec, "boot": boot, "at": at}
    return NewEvent(INTENDED, data)


def settled(
    intent_id: str, status: IntentStatus, outcome: dict[str, Any] | None = None
) -> NewEvent:
    return NewEvent(SETTLED, {"id": intent_id, "status": status, "outcome": outcome})


def apply_effect(log: IntentLog, event: NewEvent) -> IntentLog:
    """`log` after an `effect.*` event (pure); any other event leaves it as it is."""
    data = event.data
    if event.type == INTENDED:
        intent = Intent.model_validate(data)
        by_key = {**log.by_key, intent.key: intent.id} if intent.key else log.by_key
        return IntentLog(items={**log.items, intent.id: intent}, by_key=by_key)
    if event.type != SETTLED or data.get("id") not in log.items:
        return log
    items = dict(log.items)
    items[data["id"]] = items[data["id"]].model_copy(
        update={"status": data["status"], "outcome": data.get("outcome")}
    )
    done = [i for i in items.values() if i.status != "pending"]
    by_key = log.by_key
    if len(done) > KEEP_SETTLED:
        for old in sorted(done, key=lambda i: i.at)[: len(done) - KEEP_SETTLED]:
            del items[old.id]
        by_key = {k: v for k, v in by_key.items() if v in items}
    return IntentLog(items=items, by_key=by_key)
