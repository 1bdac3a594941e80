"""MCP tool servers: the actor that runs them, and the catalog of their tools (docs/mcp.md)."""

from tek_actors.mcp.actor import McpActor
from tek_actors.mcp.catalog import PREFIX, Catalog, McpTool, split_name

__all__ = ["PREFIX", "Catalog", "McpActor", "McpTool", "split_name"]
