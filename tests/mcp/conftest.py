"""MCP tests: a real stdio MCP server (server.py, written with the SDK) under a real gateway."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tek_actors import Client
from tests.waiting import until

SERVER = Path(__file__).with_name("server.py")


def server_config(marks: Path, *flags: str, **extra: Any) -> dict[str, Any]:
    return {"command": [sys.executable, str(SERVER), str(marks), *flags], **extra}


def marks(path: Path) -> list[str]:
    """What the server did, one line per step (`<tool> start|done|cancelled ...`)."""
    return path.read_text().splitlines() if path.exists() else []


def server_view(client: Client, name: str = "t") -> dict[str, Any]:
    return dict(client.call("mcp.list", {})["servers"][name])


# A deadline, not a wait: a Python SDK server takes ~1 s to start on a quiet machine, and two
# CI suites side by side on 2 cores were seen to need more than 30 s.
def until_state(
    client: Client, state: str, name: str = "t", *, timeout: float = 90, **more: Any
) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        view = server_view(client, name)
        ok = view["state"] == state and all(view.get(k) == v for k, v in more.items())
        return view if ok else None

    return until(seen, f"MCP server {name} {state} {more}", timeout=timeout)


def _finals(client: Client, session_id: str) -> list[dict[str, Any]]:
    entries = client.call("sessions.get", {"id": session_id})["entries"]
    return [
        e
        for e in entries
        if e["role"] == "error" or (e["role"] == "assistant" and not e.get("tool_calls"))
    ]


def send_tool_call(client: Client, session_id: str, tool: str, arguments: dict[str, Any]) -> int:
    """Send a message that makes the local model call `tool`; the number of turns answered
    before it (for final_answer)."""
    before = len(_finals(client, session_id))
    text = f"tool: {tool} " + json.dumps(arguments)
    client.call("sessions.send", {"id": session_id, "text": text})
    return before


def tool_results(client: Client, session_id: str) -> list[dict[str, Any]]:
    entries = client.call("sessions.get", {"id": session_id})["entries"]
    return [e for e in entries if e["role"] == "tool"]


def final_answer(client: Client, session_id: str, before: int) -> dict[str, Any]:
    """The answer of the turn sent after `before` turns were answered."""

    def answered() -> dict[str, Any] | None:
        finals = _finals(client, session_id)
        return finals[before] if len(finals) > before else None

    return until(answered, f"turn {before + 1} of {session_id} answered", timeout=60)
