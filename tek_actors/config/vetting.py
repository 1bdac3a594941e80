"""Trying a change before it is written: the MCP servers it adds or changes.

`config.set` of an MCP server is answered once the server runs and its tools are listed, or
refused, naming the server, when it cannot start; refused, nothing changed (docs/mcp.md). So
before the ConfigActor writes a change (a request: a hand edit is applied as it is, its servers
start as they can) that adds or changes an enabled server, it asks the MCP actor to start those
servers (`Vet`) and waits for the answer (`Vetted`) without blocking: changes queued behind it
wait their turn. The MCP actor keeps the servers it started and takes them over when the change
is applied, so a vetted server is started once. No MCP actor running: nothing to ask, the
change goes on and the servers start when it comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from tek_actors.config.model import Config, McpServerConfig
from tek_actors.errors import InvalidValue, RequestTimeout

if TYPE_CHECKING:
    from tek_actors.config.actor import ConfigActor

__all__ = ["VET_TIMEOUT_S", "Vet", "Vetted", "Vetter"]

VET_TIMEOUT_S = 60.0  # a start and a tool list (the MCP actor gives up on a start at 30 s)


@dataclass(frozen=True, slots=True)
class Vet:
    """To the MCP actor: start these servers, answer `Vetted` once each runs or failed."""

    token: int
    servers: dict[str, McpServerConfig] = field(repr=False)  # env and headers: secrets
    reply_to: pykka.ActorRef[Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Vetted:
    token: int
    problems: dict[str, str]  # server name -> why it could not start (empty: all run)


@dataclass(frozen=True, slots=True)
class _VetTimeout:
    token: int


class Vetter:
    """The ConfigActor's one change under trial (it handles one change at a time)."""

    def __init__(self, host: ConfigActor) -> None:
        self.host = host
        self.op: Any = None  # the change waiting for its Vetted
        self.token = 0
        self.passed: set[int] = set()  # ids of changes that were vetted: go on with them

    @property
    def busy(self) -> bool:
        return self.op is not None

    def holds(self, op: Any, before: Config, after: Config) -> bool:
        """Whether `op` (changing `before` into `after`) waits for a trial first; then the
        host hears back through `on_message`."""
        if op.ticket is None or id(op) in self.passed:
            self.passed.discard(id(op))
            return False
        servers = {
            name: server
            for name, server in after.mcp.servers.items()
            if server.enabled and before.mcp.servers.get(name) != server
        }
        if not servers:
            return False
        self.token += 1
        if not self.host.send("mcp", Vet(self.token, servers, self.host.actor_ref)):
            return False
        self.op = op
        self.host.after(VET_TIMEOUT_S, _VetTimeout(self.token))
        return True

    def on_message(self, message: Any) -> bool:
        """Handle a Vetted or a trial's timeout (True), or say it is not ours (False)."""
        if not isinstance(message, (Vetted, _VetTimeout)):
            return False
        if message.token != self.token or self.op is None:
            return True  # a late answer of a trial that ended
        op, self.op = self.op, None
        if isinstance(message, _VetTimeout):
            self.host.answer(
                op.ticket,
                error=RequestTimeout(
                    f"the MCP servers did not start within {VET_TIMEOUT_S:g} s; nothing changed",
                    details={"started": False},
                ),
            )
        elif message.problems:
            name, why = sorted(message.problems.items())[0]
            others = sorted(message.problems)[1:]
            more = f" (and {', '.join(others)})" if others else ""
            self.host.answer(
                op.ticket,
                error=InvalidValue(
                    f"mcp.servers.{name}: the MCP server could not start{more}: {why}; "
                    "nothing changed",
                    details={"path": f"mcp.servers.{name}", "servers": message.problems},
                ),
            )
        else:
            self.passed.add(id(op))
            self.host.queue.appendleft(op)
        self.host._next()
        return True
