"""Reading and changing the configuration from the CLI, with or without a running gateway.

With a gateway on the home, every change goes through its ConfigActor (`config.set` ...), which
validates, writes, and has every component apply it before answering. With none, the CLI takes
the home's lock (so no gateway can start meanwhile) and makes the same checked, atomic, backed-up
write itself; the gateway records it as a change when it next starts.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from tek_actors.client import Client
from tek_actors.config.document import (
    changed_paths,
    propose,
    redact,
    redact_path,
    restart_required,
    value_at,
)
from tek_actors.config.store import ConfigStore, Loaded
from tek_actors.errors import Conflict
from tek_actors.home import HomeLock, TekHome

__all__ = ["ConfigAccess", "describe_change"]


class ConfigAccess:
    """`with ConfigAccess(home, endpoint) as access:` then get/set/unset/replace/restore."""

    def __init__(self, home: TekHome, endpoint: str | None) -> None:
        self.home = home
        self.endpoint = endpoint
        self.store = ConfigStore(home.config_path)
        self.client: Client | None = None
        self._lock: HomeLock | None = None

    @property
    def online(self) -> bool:
        return self.client is not None

    def __enter__(self) -> ConfigAccess:
        if self.endpoint is None:
            self.home.ensure()
            lock = HomeLock(self.home)
            with contextlib.suppress(Conflict):  # Conflict: a gateway holds the home; ask it
                lock.acquire()
                self._lock = lock
                return self
        self.client = Client(self.endpoint, home=self.home, timeout=15.0)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.client is not None:
            self.client.close()
        if self._lock is not None:
            self._lock.release()

    # -- reading -----------------------------------------------------------------------------

    def loaded(self) -> Loaded:
        return self.store.load(expected=bool(self.store.backups()))

    def get(self, path: str | None) -> dict[str, Any]:
        if self.client is not None:
            return dict(self.client.call("config.get", {"path": path}))
        loaded = self.loaded()
        whole = loaded.config.model_dump(mode="json")
        value = redact(whole) if path is None else redact_path(path, value_at(whole, path))
        out: dict[str, Any] = {"version": None, "value": value, "source": loaded.source}
        if loaded.problem is not None:
            out["problem"] = loaded.problem.message
        return out

    def version(self) -> int | None:
        return self.get(None)["version"] if self.client is not None else None

    # -- changing ----------------------------------------------------------------------------

    def change(self, kind: str, **payload: Any) -> dict[str, Any]:
        """`kind` is set, unset or replace; the gateway's reply, or what the offline write did."""
        if self.client is not None:
            return dict(self.client.call(f"config.{kind}", payload))
        loaded = self._writable()
        if kind == "replace":
            payload.pop("base_version", None)
        doc, _ = propose(loaded.raw, kind, **payload)
        return self._write(loaded, doc)

    def restore(self, name: str) -> dict[str, Any]:
        if self.client is not None:
            return dict(self.client.call("config.restore", {"name": name}))
        loaded = self.loaded()  # also over a newer tek's file: `write` keeps it as a backup
        doc, _ = self.store.read_backup(name)
        return self._write(loaded, doc)

    def _writable(self) -> Loaded:
        loaded = self.loaded()
        if loaded.file_newer:
            raise Conflict(
                "config.json is from a newer tek and is never overwritten: upgrade tek, or "
                "restore a backup of this one (`tek config backups`, `tek config restore NAME`)",
                details={"path": "config_version"},
            )
        return loaded

    def _write(self, loaded: Loaded, doc: dict[str, Any]) -> dict[str, Any]:
        paths = changed_paths(loaded.raw, doc)
        if paths or loaded.problem is not None:
            self.store.write(doc)
        return {
            "version": None,
            "offline": True,
            "changes": paths,
            "restart_required": restart_required(paths),
        }


def describe_change(reply: dict[str, Any]) -> str:
    """One line for a person about what a change did."""
    if reply.get("offline"):
        text = "written to config.json (no gateway is running; it applies at the next start)"
    elif reply.get("changed") is False:
        text = f"unchanged (version {reply['version']})"
    else:
        text = f"version {reply['version']}, applied by {', '.join(reply['applied_by']) or '-'}"
    if reply.get("restart_required"):
        text += f"; takes effect at the next gateway start: {', '.join(reply['restart_required'])}"
    return text
