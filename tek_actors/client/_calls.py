"""One request on its way through the client: its idem key, deadline, retries and future.

Touched only on the client's I/O thread (the future is the thread-safe part).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

__all__ = ["READ_ONLY_VERBS", "RETRYABLE", "Call", "is_state_changing"]

READ_ONLY_VERBS = frozenset(
    {
        "ping",
        "status",
        "get",
        "list",
        "logs",
        "plan_switch",
        "validate",
        "schema",
        "head",
        "backups",
        "complete",  # a model call changes no state (and its reply is not recorded)
        "test",
    }
)
RETRYABLE = frozenset({"unavailable", "overloaded", "rate_limited", "timeout"})


def is_state_changing(type_name: str) -> bool:
    """True for request types that change state (they get an idem key and the outbox)."""
    domain, _, verb = type_name.partition(".")
    return bool(verb) and domain not in ("gateway", "test") and verb not in READ_ONLY_VERBS


class Call:
    __slots__ = (
        "attempts",
        "deadline",
        "durable",
        "future",
        "idem",
        "internal",
        "payload",
        "retry_at",
        "sent",
        "type",
    )

    def __init__(
        self,
        type_name: str,
        payload: dict[str, Any],
        idem: str | None,
        deadline: float | None,
        *,
        durable: bool,
        internal: bool = False,
    ) -> None:
        self.type = type_name
        self.payload = payload
        self.idem = idem
        self.deadline = deadline
        self.durable = durable
        self.internal = internal
        self.future: Future[Any] = Future()
        self.retry_at = 0.0
        self.sent = False
        self.attempts = 0

    @property
    def retryable(self) -> bool:
        return self.idem is not None or not is_state_changing(self.type)
