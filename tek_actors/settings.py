"""The gateway's own settings: endpoint, bounds, timeouts and supervision numbers.

Read at start from the `gateway` section of config.json (unknown keys are refused), overridden
by explicit arguments. The Config issue's ConfigActor will own config.json and apply changes
live; until then these are read once at start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from tek_actors.errors import InvalidValue
from tek_actors.wire import WireModel

__all__ = ["GatewaySettings", "SupervisionSettings", "load_settings"]

Seconds = Annotated[float, Field(gt=0, le=86_400)]


class SupervisionSettings(WireModel):
    child_max_restarts: Annotated[int, Field(ge=0, le=1000)] = 5
    child_window_s: Seconds = 30.0
    backoff_initial_s: Annotated[float, Field(ge=0, le=600)] = 0.5
    backoff_max_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    backoff_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    stable_after_s: Seconds = 10.0
    tree_max_restarts: Annotated[int, Field(ge=0, le=1000)] = 3
    tree_window_s: Seconds = 60.0
    shutdown_timeout_s: Seconds = 5.0


class GatewaySettings(WireModel):
    endpoint: str | None = None
    token: Annotated[str, Field(min_length=16)] | None = None
    max_frame_bytes: Annotated[int, Field(ge=1024, le=64 << 20)] = 1 << 20
    request_timeout_ms: Annotated[int, Field(gt=0, le=86_400_000)] = 60_000
    client_queue_bound: Annotated[int, Field(ge=10, le=10_000_000)] = 10_000
    replay_chunk: Annotated[int, Field(ge=1, le=100_000)] = 500
    socket_hwm: Annotated[int, Field(ge=1, le=1_000_000)] = 1_000
    heartbeat_s: Annotated[float, Field(ge=0.05, le=60)] = 1.0
    restart_grace_ms: Annotated[int, Field(ge=0, le=600_000)] = 30_000
    snapshot_every: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    journal_keep_events: Annotated[int, Field(ge=0)] = 1_000_000
    idem_retention_s: Seconds = 7 * 86_400.0
    prune_interval_s: Seconds = 300.0
    supervision: SupervisionSettings = SupervisionSettings()
    test_hooks: bool = False


def load_settings(config_path: Path, **overrides: Any) -> GatewaySettings:
    """The `gateway` section of config.json (if any), with `overrides` (None values ignored)."""
    section: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidValue(
                f"{config_path} is not readable JSON: {exc}", details={"path": ""}
            ) from exc
        if isinstance(data, dict) and isinstance(data.get("gateway"), dict):
            section = dict(data["gateway"])
    section.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewaySettings.model_validate(section)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = "gateway." + ".".join(str(p) for p in err["loc"])
        raise InvalidValue(f"{path}: {err['msg']}", details={"path": path}) from exc
