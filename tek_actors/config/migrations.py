"""The chain of config.json migrations, from the oldest `config_version` to the current one.

Each step is a pure function of the document of one version to the next. A step moves or
renames only what it knows and keeps every other field, so a file written by a newer tek and
read by an older one (or the other way round) loses nothing. The ConfigActor backs the old file
up before it writes a migrated one.

    1 -> 2   Version 1 is the spine's file: no `config_version`, only a `gateway` section that
             also held the journal's retention. Retention became its own section (`retention`,
             applied live by the retention actor): `gateway.journal_keep_events` ->
             `retention.keep_events`, `gateway.idem_retention_s` and `gateway.prune_interval_s`
             -> `retention.*`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tek_actors.config.model import CURRENT_VERSION
from tek_actors.errors import InvalidValue

__all__ = ["MIGRATIONS", "NewerVersion", "file_version", "migrate"]

Migration = Callable[[dict[str, Any]], dict[str, Any]]


class NewerVersion(InvalidValue):
    """The file was written by a newer tek: it is refused and never overwritten."""


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    gateway = doc.get("gateway")
    if isinstance(gateway, dict):
        retention = doc.setdefault("retention", {})
        if isinstance(retention, dict):
            for old, new in (
                ("journal_keep_events", "keep_events"),
                ("idem_retention_s", "idem_retention_s"),
                ("prune_interval_s", "prune_interval_s"),
            ):
                if old in gateway and new not in retention:
                    retention[new] = gateway.pop(old)
            if not retention:
                del doc["retention"]
    return doc


# MIGRATIONS[n] turns a version-n document into a version-(n+1) one.
MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}


def file_version(doc: dict[str, Any]) -> int:
    """The document's `config_version` (a file without one is version 1)."""
    version = doc.get("config_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidValue(
            "config_version: must be a positive integer",
            details={"path": "config_version", "expected": f"an integer 1..{CURRENT_VERSION}"},
        )
    if version > CURRENT_VERSION:
        raise NewerVersion(
            f"config_version: config.json is version {version}, written by a newer tek; this "
            f"gateway knows versions up to {CURRENT_VERSION}. It is left untouched: upgrade "
            "tek, or restore a backup of this version (`tek config backups`, `tek config "
            "restore NAME`; the newer file is kept as a backup).",
            details={
                "path": "config_version",
                "expected": f"an integer <= {CURRENT_VERSION}",
                "found": version,
                "known": CURRENT_VERSION,
            },
        )
    return version


def migrate(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The document brought to CURRENT_VERSION (a copy) and the steps taken ("1->2", ...)."""
    version = file_version(doc)
    out, steps = copy.deepcopy(doc), []
    while version < CURRENT_VERSION:
        out = MIGRATIONS[version](out)
        version += 1
        out["config_version"] = version
        steps.append(f"{version - 1}->{version}")
    return out, steps
