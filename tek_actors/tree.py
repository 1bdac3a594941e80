"""The gateway's actor tree: which children the supervisor starts, in order, and with what.

Order matters at a start: each child runs and has rehydrated before the next starts, so the
config actor comes first (every ConfigDependent subscribes to it as it starts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tek_actors.actors import RetentionTicker
from tek_actors.approvals import ApprovalActor
from tek_actors.config import ConfigActor
from tek_actors.mcp import McpActor
from tek_actors.procs import ProcessMonitorActor
from tek_actors.providers import ProviderActor
from tek_actors.runtime import Actor, Backoff, ChildSpec, Intensity
from tek_actors.sessions import SessionManager

if TYPE_CHECKING:
    from tek_actors.gateway import Gateway

__all__ = ["child_specs"]


def child_specs(gateway: Gateway) -> list[ChildSpec]:
    sup = gateway.settings.supervision
    common: dict[str, Any] = {
        "intensity": Intensity(sup.child_max_restarts, sup.child_window_s),
        "backoff": Backoff(sup.backoff_initial_s, sup.backoff_max_s, 2.0, sup.backoff_jitter),
        "stable_after_s": sup.stable_after_s,
        "shutdown_timeout_s": sup.shutdown_timeout_s,
    }
    every = {"snapshot_every": gateway.settings.snapshot_every}
    state = gateway.home.state_dir

    def child(name: str, actor_class: type[Actor], **options: Any) -> ChildSpec:
        return ChildSpec(name, actor_class, options={**every, **options}, **common)

    specs = [
        child(
            "config",
            ConfigActor,
            path=gateway.home.config_path,
            hooks={"frontend": gateway._apply_frontend_limits},
            watch_s=gateway.config_watch_s,
        ),
        child("approvals", ApprovalActor),
        child("providers", ProviderActor),
        child(
            "sessions",
            SessionManager,
            workspace=state / "workspace",
            estimator=gateway.token_estimator,
            mcp_catalog=gateway.mcp_catalog,
        ),
        child("procs", ProcessMonitorActor, procs_dir=state / "procs", snapshot_every=500),
        child("mcp", McpActor, mcp_dir=state / "mcp", mcp_catalog=gateway.mcp_catalog),
        ChildSpec("retention", RetentionTicker, **common),
    ]
    if gateway.test_hooks:
        from tek_actors.testing.probe import ProbeActor

        specs.append(child("probe", ProbeActor))
    return specs + gateway._extra_children
