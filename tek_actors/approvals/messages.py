"""How a session learns that a person (or the expiry sweep) decided a pending tool call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pykka

__all__ = ["ApprovalChanged", "WatchApproval"]


@dataclass(frozen=True, slots=True)
class WatchApproval:
    """Tell `reply_to` an ApprovalChanged once approval `approval_id` is no longer pending (at
    once if it is not). Watches live in the approval actor's memory: a watcher that may outlive
    a restart of that actor sends the watch again now and then (it is idempotent)."""

    approval_id: str
    reply_to: pykka.ActorRef[Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApprovalChanged:
    approval_id: str
    view: dict[str, Any]  # what approvals.get answers
