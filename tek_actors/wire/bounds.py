"""How large a request of each type may be: a field larger than its type needs is refused
(`too_large`, naming the type's bound) before anything of it is kept.

Types that carry content (a config value or document, a message, tool arguments, argv and
environment, model messages) may fill a whole frame (`gateway.max_frame_bytes`). Every other
type names things (ids, paths, a decision): its frame is bounded at SMALL.
"""

from __future__ import annotations

__all__ = ["SMALL", "payload_bound"]

SMALL = 16 * 1024

_SMALL_TYPES = frozenset(
    {
        "bye",
        "gateway.ping",
        "gateway.status",
        "gateway.restart",
        "gateway.shutdown",
        "test.crash",
        "config.get",
        "config.unset",
        "config.backups",
        "config.restore",
        "config.schema",
        "approvals.get",
        "approvals.list",
        "approvals.decide",
        "approvals.begin",
        "procs.get",
        "procs.kill",
        "procs.list",
        "procs.logs",
        "procs.remove",
        "providers.list",
        "providers.reset",
        "providers.status",
        "providers.test",
        "sessions.delete",
        "sessions.get",
        "sessions.list",
        "sessions.plan_switch",
        "sessions.rename",
        "sessions.switch",
        "sessions.undo_switch",
        "mcp.list",
        "mcp.restart",
        "probe.get",
        "probe.remove",
    }
)


def payload_bound(type_name: str, max_frame_bytes: int) -> int:
    """The largest frame (bytes) a request of `type_name` may come in."""
    return min(SMALL, max_frame_bytes) if type_name in _SMALL_TYPES else max_frame_bytes
