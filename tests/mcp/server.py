"""An MCP server for the tests, written with the SDK (MCPServer), run as a real stdio server.

    python server.py MARKS [--fail-start] [--slow-start SECONDS] [--http PORT]

Every tool call appends a line to MARKS (`<tool> start|done|cancelled <args>`), which is how a
test learns what ran, how often, and whether a cancellation reached the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ImageContent, ToolAnnotations

MARKS = sys.argv[1]
if "--fail-start" in sys.argv:
    print("this server refuses to start (--fail-start)", file=sys.stderr, flush=True)
    sys.exit(7)

if "--slow-start" in sys.argv:  # a server whose start takes a while (before it reads stdin)
    import time

    time.sleep(float(sys.argv[sys.argv.index("--slow-start") + 1]))

app = MCPServer("tek-test")


def mark(*words: object) -> None:
    with open(MARKS, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")
        f.flush()
        os.fsync(f.fileno())


@app.tool(description="Say the text back.")
def echo(text: str) -> str:
    mark("echo", "done", json.dumps(text))
    return f"echo: {text}"


async def _wait(name: str, seconds: float) -> str:
    mark(name, "start", seconds)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        mark(name, "cancelled", seconds)
        raise
    mark(name, "done", seconds)
    return f"{name} slept {seconds}"


@app.tool(description="Wait, changing nothing.", annotations=ToolAnnotations(read_only_hint=True))
async def look(seconds: float) -> str:
    return await _wait("look", seconds)


@app.tool(description="Wait, then change something (neither read-only nor idempotent).")
async def change(seconds: float) -> str:
    return await _wait("change", seconds)


@app.tool(description="Exit the server at once, mid-call.")
def die() -> str:
    mark("die", "start")
    os._exit(3)


@app.tool(description="Add the tool `fresh` and say that the tool list changed.")
async def grow(ctx: Context) -> str:
    app.add_tool(lambda: "fresh!", name="fresh", description="Added later.")
    await ctx.session.send_tool_list_changed()
    mark("grow", "done")
    return "grown"


@app.tool(description="Answer a picture and a text.")
def picture() -> list[object]:
    pixel = base64.b64encode(b"\x89PNG" + bytes(60)).decode()
    return [ImageContent(type="image", data=pixel, mime_type="image/png"), "a tiny picture"]


@app.tool(description="Answer `size` characters.")
def big(size: int) -> str:
    return "x" * size


@app.tool(description="Answer an error result.")
def broken() -> str:
    raise ToolError("broken on purpose")


if "--http" in sys.argv:  # Streamable HTTP on loopback instead of stdio
    app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[sys.argv.index("--http") + 1]))
else:
    app.run("stdio")
