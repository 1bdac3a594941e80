"""A stdio MCP server for the chaos run (and anyone's tests), written with the SDK:

    python -m tek_actors.testing.mcp_server          TEK_CHAOS_MARKER=<file> in its environment

Its tools `mark` and `mark_asked` append their `token` to the marker file (fsynced) and answer
it: neither is annotated read-only or idempotent, so a call cut short by a crash must never be
sent again, and the marker file says how often each really ran.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

__all__ = ["app"]

app = MCPServer("tek-chaos")


def _mark(token: str) -> str:
    with open(os.environ["TEK_CHAOS_MARKER"], "a") as marker:
        marker.write(token + "\n")
        marker.flush()
        os.fsync(marker.fileno())
    return f"marked {token}"


@app.tool(description="Append the token to the marker file (approved by a rule).")
def mark(token: str) -> str:
    return _mark(token)


@app.tool(description="Append the token to the marker file (a person decides).")
def mark_asked(token: str) -> str:
    return _mark(token)


if __name__ == "__main__":
    app.run("stdio")
