"""ProbeActor: a small persistent actor for tests, chaos drivers and benchmarks.

Enabled only with test hooks on (`GatewaySettings.test_hooks`, or TEK_TEST_HOOKS=1 for a gateway
process). It keeps an ordered map of keys to values, changed only through the journal, so tests
can check that every acknowledged `probe.append` survives crashes, `kill -9` and restarts, and
that idempotency keys make resends harmless. `work_ms` simulates a request that takes a while
(so restart-under-load tests have work in flight).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictStr

from tek_actors.errors import Conflict, NotFound
from tek_actors.runtime import PersistentActor, command
from tek_actors.store import NewEvent
from tek_actors.wire import EmptyPayload, WireModel

__all__ = ["ProbeActor", "ProbeState"]


class ProbeState(BaseModel):
    items: dict[str, Any] = {}
    order: list[str] = []


class AppendPayload(WireModel):
    key: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    value: Any = None
    work_ms: Annotated[int, Field(ge=0, le=60_000)] = 0


class KeyPayload(WireModel):
    key: Annotated[StrictStr, Field(min_length=1, max_length=256)]


class ProbeActor(PersistentActor[ProbeState]):
    domain = "probe"
    state_model = ProbeState

    def apply(self, state: ProbeState, event: NewEvent) -> ProbeState:
        if event.type == "probe.appended":
            key = event.data["key"]
            return ProbeState(
                items={**state.items, key: event.data["value"]}, order=[*state.order, key]
            )
        if event.type == "probe.removed":
            key = event.data["key"]
            items = dict(state.items)
            items.pop(key, None)
            return ProbeState(items=items, order=[k for k in state.order if k != key])
        return state

    @command("probe.append", AppendPayload)
    def append(self, payload: AppendPayload) -> dict[str, Any]:
        if payload.key in self.state.items:
            raise Conflict(f"key {payload.key!r} exists", details={"key": payload.key})
        if payload.work_ms:
            time.sleep(payload.work_ms / 1000)  # simulated work, not synchronisation
        event = NewEvent("probe.appended", {"key": payload.key, "value": payload.value})
        return self.persist(  # type: ignore[no-any-return]
            event, result=lambda state: {"key": payload.key, "count": len(state.order)}
        )

    @command("probe.remove", KeyPayload)
    def remove(self, payload: KeyPayload) -> dict[str, Any]:
        if payload.key not in self.state.items:
            raise NotFound(f"no key {payload.key!r}", details={"key": payload.key})
        return self.persist(  # type: ignore[no-any-return]
            NewEvent("probe.removed", {"key": payload.key}),
            result=lambda state: {"key": payload.key, "count": len(state.order)},
        )

    @command("probe.get", EmptyPayload)
    def get(self, payload: EmptyPayload) -> dict[str, Any]:
        return {"items": self.state.items, "order": self.state.order, "seq": self.seq}
