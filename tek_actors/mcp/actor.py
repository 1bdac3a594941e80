"""McpActor: the MCP servers of `mcp.servers`, their tools, and every call of one (docs/mcp.md).

Each enabled server is started (a child of the gateway for a stdio one: its pipes cannot outlive
the gateway, so a gateway restart starts it again), its tools are listed and published to the
sessions' catalog (catalog.py), and it is watched: one that ends on its own is started again
after a backoff (`restarts` counts it), and one that ends MAX_DEATHS times within WINDOW_S is
`failed`, with the last lines of its stderr in `last_error`, until its config changes or
`mcp.restart` asks again. The gateway stays up through all of it.

A call (`mcp.call`, sent by a session once the call is approved and begun) is an effect outside
the journal, so it goes through an intent (runtime/effects.py), keyed by the approval's id:

    effect.intended  journaled before the call is sent to the server
    effect.settled   `done` with the result (bounded), journaled before the answer

A call asked again under its key (a session that restarted) joins the one running, or gets the
recorded result; it is never sent twice. An intent still pending when the actor starts belongs
to an incarnation that is gone (a gateway kill -9, an actor crash: the loop and its servers went
with it), so it is settled `unknown`: asked again, it is answered `conflict` with `outcome:
unknown` (the session reports the call unknown, never re-run), unless the server annotated the
tool `readOnlyHint` or `idempotentHint`; then it is sent again, once, and completes.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictStr

from tek_actors.config import Config, ConfigDependent
from tek_actors.config.model import McpServerConfig
from tek_actors.config.vetting import Vet, Vetted
from tek_actors.errors import Conflict, NotFound, Unavailable
from tek_actors.mcp.catalog import MAX_TOOLS, Catalog, McpTool, build_tools
from tek_actors.mcp.link import CallDone, Down, Loop, ServerLink, ToolsListed, Up
from tek_actors.runtime import ActorContext, PersistentActor, command
from tek_actors.runtime.actor import tell_quietly
from tek_actors.runtime.effects import IntentLog, apply_effect, intended, settled
from tek_actors.runtime.killpoints import kill_point
from tek_actors.runtime.messages import Ticket
from tek_actors.store import NewEvent
from tek_actors.wire import WireModel

__all__ = ["MAX_DEATHS", "WINDOW_S", "McpActor", "McpState"]

MAX_DEATHS = 5  # ends on its own within WINDOW_S that make a server `failed`
WINDOW_S = 60.0
BACKOFF_S = (0.5, 30.0)  # the first restart's delay, doubled each time up to the second
STOP_S = 5.0  # a stop of every server (the SDK allows each 2 s after stdin closes, then kills)
_BOUND = ("server", "tool", "arguments")  # what an intent's key binds
KEEP_OUTPUT = 16 << 10  # of a result's output, kept in its intent for a resend
STAGED_S = 60.0  # a server started for a change's trial waits this long to be taken over
_UNKNOWN = (
    "the outcome of this call is unknown: the gateway stopped while the MCP server ran it. It "
    "was not run again (the tool is not annotated read-only or idempotent)"
)


class McpState(BaseModel):
    intents: IntentLog = IntentLog()


class _Empty(WireModel):
    pass


class _Name(WireModel):
    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class _Call(WireModel):
    server: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    tool: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    arguments: dict[str, Any] = Field(default_factory=dict)
    key: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    session: StrictStr | None = None


@dataclass(frozen=True, slots=True)
class _Restart:
    name: str
    gen: int


@dataclass(frozen=True, slots=True)
class _Unstage:
    name: str
    gen: int


@dataclass(slots=True)
class _Staged:
    """A server started for a config change's trial (config/vetting.py), not in use yet."""

    config: McpServerConfig
    link: ServerLink
    token: int
    up: Up | None = None


@dataclass(slots=True)
class _Server:
    config: McpServerConfig
    state: str = "starting"  # running, starting, failed, disabled
    gen: int = 0  # of the current link: a message from an older one is stale
    link: ServerLink | None = None
    pid: int | None = None
    tools: list[McpTool] = field(default_factory=list)
    restarts: int = 0
    last_error: str | None = None
    stderr: list[str] = field(default_factory=list)
    deaths: list[float] = field(default_factory=list)
    waiting: list[Ticket] = field(default_factory=list)  # mcp.restart, answered when it is up


class McpActor(ConfigDependent, PersistentActor[McpState]):
    """Options: `mcp_dir` (pid and stderr files), `mcp_catalog` (shared with the sessions)."""

    domain = "mcp"
    state_model = McpState

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.folder = Path(ctx.options["mcp_dir"])
        self.catalog: Catalog = ctx.options.get("mcp_catalog") or Catalog()
        self.servers: dict[str, _Server] = {}
        self.calls: dict[str, list[Ticket]] = {}  # intent id -> the requests waiting for it
        self.staged: dict[str, _Staged] = {}
        self.trials: dict[int, tuple[Vet, dict[str, str]]] = {}  # token -> (vet, problems)
        self._gens = itertools.count(1)  # every link's gen, staged or not: never reused
        self.loop: Loop | None = None

    # -- life --------------------------------------------------------------------------------

    def on_begin(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.loop = Loop(f"tek-mcp-{self.ctx.incarnation}")
        super().on_begin()  # rehydrate, then configure: the servers start
        gone = [
            settled(i.id, "unknown", {"reason": "the gateway stopped while it ran"})
            for i in self.state.intents.pending()
        ]
        if gone:
            self.persist(*gone)

    def on_release(self) -> None:
        for name in self.servers:
            self.catalog.withdraw(name)
        if self.loop is not None:
            self.loop.close(STOP_S)

    def apply(self, state: McpState, event: NewEvent) -> McpState:
        if event.type.startswith("effect."):
            return McpState(intents=apply_effect(state.intents, event))
        return state  # mcp.server: a report

    def configure(self, config: Config) -> None:
        wanted = config.mcp.servers
        for name in [n for n in self.servers if n not in wanted]:
            gone = self.servers.pop(name)
            self._stop_link(gone, name)
            self._answer_waiting(gone, Conflict(f"the MCP server {name!r} was removed"))
            self._report(name, "removed")
        for name, conf in wanted.items():
            server = self.servers.get(name)
            if server is not None and server.config == conf:
                continue
            if server is None:
                server = self.servers[name] = _Server(conf)
            else:
                self._stop_link(server, name)
                server.config, server.restarts, server.deaths = conf, 0, []
                server.last_error, server.stderr = None, []
            if conf.enabled:
                if not self._adopt(name):
                    self._start(name)
            else:
                server.state = "disabled"
                self._answer_waiting(server, Conflict(f"the MCP server {name!r} is disabled"))
                self._report(name)

    # -- commands ----------------------------------------------------------------------------

    @command("mcp.list", _Empty)
    def list_(self, payload: _Empty) -> dict[str, Any]:
        return {"servers": {name: self._view(name) for name in sorted(self.servers)}}

    @command("mcp.restart", _Name)
    def restart(self, payload: _Name) -> None:
        server = self._server(payload.name)
        if server.state == "disabled":
            raise Conflict(
                f"the MCP server {payload.name!r} is disabled; enable it first "
                f"(tek config set mcp.servers.{payload.name}.enabled true)",
                details={"state": "disabled"},
            )
        self._stop_link(server, payload.name)
        server.deaths, server.restarts = [], server.restarts + 1
        server.waiting.append(self.defer())
        self._start(payload.name)

    @command("mcp.call", _Call)
    def call(self, payload: _Call) -> Any:
        found = self.state.intents.find(payload.key)
        asked = (payload.server, payload.tool, payload.arguments)
        if found is not None and asked != tuple(found.spec.get(k) for k in _BOUND):
            raise Conflict(  # a key binds one call: never another call's result, or a re-run
                f"the key {payload.key!r} belongs to another call (of {found.spec.get('tool')!r} "
                f"on {found.spec.get('server')!r}, or other arguments); nothing was run",
                details={"key": payload.key},
            )
        if found is not None:
            if found.status == "pending":  # under way in this incarnation: wait for it
                self.calls.setdefault(found.id, []).append(self.defer())
                return None
            if found.status == "done":
                return found.outcome
            if not found.spec.get("rerun"):
                raise Conflict(_UNKNOWN, details={"outcome": "unknown", "intent": found.id})
        server = self._server(payload.server)
        if server.state in ("failed", "disabled"):
            why = f": {server.last_error}" if server.last_error else ""
            raise Conflict(
                f"the MCP server {payload.server!r} is {server.state}{why}; nothing was run",
                details={"state": server.state},
            )
        link = server.link
        if server.state != "running" or link is None:
            raise Unavailable(
                f"the MCP server {payload.server!r} is starting; nothing was run yet",
                retry_after_ms=500,
                details={"started": False, "actor": self.name},
            )
        tool = next((t for t in server.tools if t.name == payload.tool), None)
        if tool is None:
            names = ", ".join(t.name for t in server.tools) or "none"
            raise NotFound(
                f"the MCP server {payload.server!r} has no tool {payload.tool!r} "
                f"(its tools: {names}); nothing was run"
            )
        intent_id = "mcp-" + uuid.uuid4().hex[:12]
        spec = {
            "server": payload.server,
            "tool": payload.tool,
            "arguments": payload.arguments,
            "session": payload.session,
            "rerun": tool.rerunnable,
        }
        at = self.ctx.clock.time()
        self.persist(
            intended(
                intent_id, "mcp.call", spec, key=payload.key, boot=self.ctx.journal.boot_id, at=at
            )
        )
        kill_point("mcp.intended")  # durable, and not sent yet
        self.calls[intent_id] = [self.defer()]
        assert self.loop is not None
        future = self.loop.submit(link.call(payload.tool, payload.arguments))
        ref = self.actor_ref
        future.add_done_callback(lambda f: tell_quietly(ref, CallDone(intent_id, _result(f))))
        return None

    # -- what the loop says ------------------------------------------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, CallDone):
            self._call_done(message)
        elif isinstance(message, Vet):
            self._vet(message)
        elif isinstance(message, (Up, Down, _Unstage)) and self._is_staged(message):
            self._staged_said(message)
        elif isinstance(message, (Up, ToolsListed, Down, _Restart)):
            server = self.servers.get(message.name)
            if server is not None and server.gen == message.gen:
                self._link_said(message.name, server, message)
        else:
            return super().on_message(message)
        return None

    def _link_said(
        self, name: str, server: _Server, message: Up | ToolsListed | Down | _Restart
    ) -> None:
        if isinstance(message, _Restart):
            if server.link is None and server.state == "starting":
                self._start(name)
            return
        if isinstance(message, Down):
            self._down(name, server, message)
            return
        tools, clashes = build_tools(name, message.tools)
        server.tools = tools
        if clashes:
            server.last_error = (
                f"tools left out (a name that clashes once made safe, or past {MAX_TOOLS} "
                f"tools): {clashes[:10]}"
                + (f" and {len(clashes) - 10} more" if len(clashes) > 10 else "")
            )
        if isinstance(message, Up):
            server.state, server.pid = "running", message.pid
            self._answer_waiting(server, None, name)
        self.catalog.publish(name, tools)
        self._report(name)

    def _down(self, name: str, server: _Server, down: Down) -> None:
        self.catalog.withdraw(name)
        server.link, server.pid, server.tools = None, None, []
        server.last_error = down.error or "the server stopped on its own"
        server.stderr = down.stderr
        now = self.ctx.clock.monotonic()
        server.deaths = [t for t in server.deaths if now - t < WINDOW_S] + [now]
        if len(server.deaths) >= MAX_DEATHS:
            server.state = "failed"
            self.log.error(
                "MCP server {} failed: {}; stderr: {}", name, server.last_error, down.stderr
            )
        else:
            server.state, server.restarts = "starting", server.restarts + 1
            first, most = BACKOFF_S
            delay = min(most, first * 2 ** (len(server.deaths) - 1))
            self.log.warning(
                "MCP server {} ended ({}); starting it again in {:.1f} s",
                name,
                server.last_error,
                delay,
            )
            self.after(delay, _Restart(name, server.gen))
        why = server.last_error + "".join(f"\n  {line}" for line in down.stderr[-3:])
        self._answer_waiting(
            server,
            Conflict(
                f"the MCP server {name!r} did not start: {why}", details={"state": server.state}
            ),
        )
        self._report(name)

    def _call_done(self, done: CallDone) -> None:
        result = done.result
        kept = dict(result)
        if len(kept.get("output", "")) > KEEP_OUTPUT:
            kept["output"] = kept["output"][:KEEP_OUTPUT] + "\n[… cut: kept for a resend …]"
        self.persist(settled(done.intent_id, "done", kept))
        for ticket in self.calls.pop(done.intent_id, []):
            self.answer(ticket, result)

    # -- helpers -----------------------------------------------------------------------------

    def _server(self, name: str) -> _Server:
        server = self.servers.get(name)
        if server is None:
            known = ", ".join(sorted(self.servers)) or "none are configured"
            raise NotFound(f"there is no MCP server {name!r} (the servers: {known})")
        return server

    # -- a config change's trial (config/vetting.py) -----------------------------------------

    def _vet(self, vet: Vet) -> None:
        """Start each server of `vet` beside whatever runs now; answer once each is up (kept,
        for `_adopt`) or down (its problem)."""
        self.trials[vet.token] = (vet, {})
        for name, config in vet.servers.items():
            old = self.staged.pop(name, None)
            if old is not None and self.loop is not None:
                self.loop.submit(old.link.stop())
            link = self._link(name, config)
            self.staged[name] = _Staged(config, link, vet.token)
            assert self.loop is not None
            self.loop.run(link)

    def _is_staged(self, message: Up | Down | _Unstage) -> bool:
        staged = self.staged.get(message.name)
        return staged is not None and staged.link.gen == message.gen

    def _staged_said(self, message: Up | Down | _Unstage) -> None:
        staged = self.staged[message.name]
        if isinstance(message, Up):
            staged.up = message
            self.after(STAGED_S, _Unstage(message.name, message.gen))
        else:  # down (it could not start), or never taken over: let it go
            del self.staged[message.name]
            if isinstance(message, _Unstage) and self.loop is not None:
                self.loop.submit(staged.link.stop())
            if isinstance(message, Down):
                why = message.error or "it stopped"
                tail = "".join(f"\n  {line}" for line in message.stderr[-5:])
                trial = self.trials.get(staged.token)
                if trial is not None:
                    trial[1][message.name] = why + tail
        self._trial_done(staged.token)

    def _trial_done(self, token: int) -> None:
        trial = self.trials.get(token)
        if trial is None:
            return
        vet, problems = trial
        waiting = [
            n
            for n in vet.servers
            if n not in problems and not (n in self.staged and self.staged[n].up is not None)
        ]
        if not waiting:
            del self.trials[token]
            tell_quietly(vet.reply_to, Vetted(token, problems))

    def _adopt(self, name: str) -> bool:
        """Take over the server a trial started for exactly this config, if it runs."""
        staged, server = self.staged.get(name), self.servers[name]
        if staged is None or staged.up is None or staged.config != server.config:
            return False
        del self.staged[name]
        server.gen, server.link = staged.link.gen, staged.link
        self._link_said(name, server, staged.up)
        return True

    # -- links -------------------------------------------------------------------------------

    def _link(self, name: str, config: McpServerConfig) -> ServerLink:
        ref = self.actor_ref
        return ServerLink(
            name, next(self._gens), config, self.folder, lambda message: tell_quietly(ref, message)
        )

    def _start(self, name: str) -> None:
        server = self.servers[name]
        server.link = self._link(name, server.config)
        server.gen = server.link.gen
        server.state = "starting"
        assert self.loop is not None
        self.loop.run(server.link)
        self._report(name)

    def _stop_link(self, server: _Server, name: str) -> None:
        """Stop its link (a call under way ends with an error result); what the old link says
        from now on is stale."""
        server.gen = next(self._gens)
        link, server.link, server.pid, server.tools = server.link, None, None, []
        self.catalog.withdraw(name)
        if link is not None and self.loop is not None:
            self.loop.submit(link.stop())

    def _answer_waiting(self, server: _Server, error: Any, name: str = "") -> None:
        waiting, server.waiting = server.waiting, []
        for ticket in waiting:
            if error is None:
                self.answer(ticket, self._view(name))
            else:
                self.answer(ticket, error=error)

    def _view(self, name: str) -> dict[str, Any]:
        server = self.servers[name]
        return {
            "state": server.state,
            "tools": [tool.view() for tool in server.tools],
            "pid": server.pid,
            "restarts": server.restarts,
            "last_error": server.last_error,
            "stderr": server.stderr,
            "transport": "http" if server.config.url else "stdio",
        }

    def _report(self, name: str, state: str | None = None) -> None:
        """`mcp.server`, journaled: what changed in a server's state or tools."""
        server = self.servers.get(name)
        data: dict[str, Any] = {"name": name, "state": state or "removed"}
        if server is not None and state is None:
            data.update(
                state=server.state,
                tools=[t.name for t in server.tools],
                pid=server.pid,
                restarts=server.restarts,
                last_error=server.last_error,
            )
        self.report(NewEvent("mcp.server", data))

    def status(self) -> dict[str, Any]:
        return {"seq": self.seq, "servers": {n: s.state for n, s in self.servers.items()}}


def _result(future: concurrent.futures.Future[Any]) -> dict[str, Any]:
    try:
        result: dict[str, Any] = future.result()
    except BaseException as exc:  # the loop closed under it: the actor is stopping
        return {"output": f"the MCP call did not complete: {exc!r}", "is_error": True, "lost": True}
    return result
