"""The MCP tools the model may call now: written by the MCP actor, read by the sessions.

A server's tools are published when it is running and its tools are listed, replaced when it
sends `notifications/tools/list_changed`, and withdrawn when it stops. A session reads the
catalog when it builds a turn's tool list and when it plans a call; what it reads is an
immutable snapshot (a new mapping is swapped in whole), so no lock is held by a reader.

A tool reaches the model as `mcp__<server>__<tool>`. Model APIs allow `[A-Za-z0-9_-]{1,64}` in
a tool's name, so any other character of the MCP name becomes `_` and the name is cut to 64;
a server name never holds `__` (config/model.py), so the first `__` after the prefix ends it.
Two tools of one server that come out the same (`a.b` and `a_b`) keep the first listed; the
other is named in the server's `last_error` rather than silently shadowing it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["PREFIX", "Catalog", "McpTool", "exposed_name", "split_name"]

PREFIX = "mcp__"
_MAX_NAME = 64
MAX_TOOLS = 128  # offered per server
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class McpTool:
    server: str
    name: str  # as the server lists it
    exposed: str  # as the model sees it: mcp__<server>__<name>
    description: str
    input_schema: dict[str, Any] = field(repr=False)
    annotations: dict[str, Any]  # wire names: readOnlyHint, idempotentHint, ...

    @property
    def rerunnable(self) -> bool:
        """Safe to run again after a crash left its outcome unknown: the server says it changes
        nothing (`readOnlyHint`) or that running it twice is running it once (`idempotentHint`).
        These are the server's hints, and trusted as such (docs/mcp.md)."""
        hints = self.annotations
        return hints.get("readOnlyHint") is True or hints.get("idempotentHint") is True

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "annotations": self.annotations,
            "as": self.exposed,
        }


def exposed_name(server: str, tool: str) -> str:
    return (PREFIX + server + "__" + _UNSAFE.sub("_", tool))[:_MAX_NAME]


def split_name(name: str) -> tuple[str, str] | None:
    """(server, exposed tool part) of an `mcp__<server>__<tool>` name; None for any other."""
    if not name.startswith(PREFIX):
        return None
    server, sep, tool = name[len(PREFIX) :].partition("__")
    return (server, tool) if sep and server and tool else None


def build_tools(server: str, listed: list[dict[str, Any]]) -> tuple[list[McpTool], list[str]]:
    """The tools of `server` as the model will see them (at most MAX_TOOLS: a server cannot
    crowd the model's context out), and the names left out (a clash, or past the bound)."""
    tools: dict[str, McpTool] = {}
    clashes = [item["name"] for item in listed[MAX_TOOLS:]]
    for item in listed[:MAX_TOOLS]:
        exposed = exposed_name(server, item["name"])
        if exposed in tools:
            clashes.append(item["name"])
            continue
        tools[exposed] = McpTool(
            server=server,
            name=item["name"],
            exposed=exposed,
            description=item.get("description") or "",
            input_schema=item.get("input_schema") or {"type": "object"},
            annotations=item.get("annotations") or {},
        )
    return list(tools.values()), clashes


class Catalog:
    """What every running server offers, by exposed name. Thread-safe: one writer (the MCP
    actor) swaps in a new mapping; readers take the current one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_server: dict[str, tuple[McpTool, ...]] = {}
        self._tools: Mapping[str, McpTool] = MappingProxyType({})

    def tools(self) -> Mapping[str, McpTool]:
        return self._tools

    def running(self, server: str) -> bool:
        """Whether `server` runs and its tools are listed (an empty list too)."""
        return server in self._by_server

    def publish(self, server: str, tools: list[McpTool]) -> None:
        with self._lock:
            self._by_server[server] = tuple(tools)
            self._swap()

    def withdraw(self, server: str) -> None:
        with self._lock:
            if self._by_server.pop(server, None) is not None:
                self._swap()

    def _swap(self) -> None:
        merged = {
            t.exposed: t for server in sorted(self._by_server) for t in self._by_server[server]
        }
        self._tools = MappingProxyType(merged)
