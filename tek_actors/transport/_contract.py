"""What the frontend is configured with and what it asks of the gateway that assembled it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tek_actors.transport._auth import ServerAuth

__all__ = ["FrontendSettings", "GatewayControl"]


@dataclass(frozen=True)
class FrontendSettings:
    endpoint: str
    auth: ServerAuth = field(default_factory=ServerAuth)
    max_frame_bytes: int = 1 << 20
    default_timeout_ms: int = 60_000
    client_queue_bound: int = 10_000  # queued durable events per client (then: catch-up)
    client_queue_bytes: int = 64 << 20  # their bytes
    peer_queue_bytes: int = 256 << 20  # every frame queued to one client (then: dropped)
    max_pending: int = 100_000  # routed requests in flight
    max_pending_bytes: int = 256 << 20  # their frames' bytes
    replay_chunk: int = 500
    sndhwm: int = 1_000
    heartbeat_s: float = 1.0
    anonymous_idle_s: float = 60.0


class GatewayControl(Protocol):
    """What the frontend asks of the gateway that assembled it (all thread-safe)."""

    @property
    def state(self) -> str:
        """The gateway's state: starting, running, degraded, stopping or stopped."""
        ...

    def status(self) -> dict[str, Any]: ...

    def request_restart(self, grace_ms: int, *, shutdown: bool, reason: str) -> None: ...

    def inject_fault(self, actor: str, fail_starts: int) -> bool | None: ...

    def sync_states(self, wants_domain: Callable[[str], bool]) -> list[tuple[str, str, int, Any]]:
        """(domain, actor, seq, state) for each domain the client follows."""
        ...
