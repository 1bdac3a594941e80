"""The asyncio side of MCP: one event loop thread, and one `ServerLink` per server on it.

The MCP SDK is asyncio; the actors are threads. The MCP actor owns one `Loop` (a thread running
an event loop) and never awaits anything: it hands the loop a coroutine (`Loop.submit`) and
hears how it went as a message in its inbox (`emit`, which only tells the actor). So the
actor's state is touched on the actor's thread alone, and the loop holds no state of the
actor's: a link knows its server's connection and nothing else.

A link speaks the handshake-era protocol (`initialize`, mode "legacy"), which every server
speaks and in which a server may send `notifications/tools/list_changed` at any time.

A stdio server is started through `/bin/sh -c 'echo $$ >PIDFILE; exec "$@"'`: the shell writes
its pid and becomes the server (exec keeps the pid), which is how the gateway learns the pid
the SDK's transport keeps to itself. The pid's pidfd tells the loop the moment the server
exits, idle or not. The server's stderr goes to `<state>/mcp/<name>.stderr`, whose last lines
explain a server that will not start or keeps dying.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import psutil
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.shared.exceptions import MCPError

from tek_actors.config.model import McpServerConfig

__all__ = ["CallDone", "Down", "Loop", "ServerLink", "ToolsListed", "Up", "describe"]

START_S = 30.0  # for `initialize` and each page of `tools/list`
STDERR_KEEP = 256 << 10  # a server's stderr file is cut back to nothing past this at a start
TAIL_LINES = 10
_LIST_PAGES = 100
_WRAP = 'echo $$ >"$0"; exec "$@"'


@dataclass(frozen=True, slots=True)
class Up:
    name: str
    gen: int
    pid: int | None
    tools: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ToolsListed:
    name: str
    gen: int
    tools: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Down:
    """The link ended: stopped (`error` None), failed to start, or the server went away."""

    name: str
    gen: int
    error: str | None
    stderr: list[str]


@dataclass(frozen=True, slots=True)
class CallDone:
    intent_id: str
    result: dict[str, Any]  # {"output", "is_error", ...}: see ServerLink.call


class Loop:
    """An asyncio event loop on its own (daemon) thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._links: set[ServerLink] = set()  # every link whose run has not ended (loop only)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, link: ServerLink) -> None:
        """Start `link`; the loop keeps it until its run ends, so that `close` stops it even
        after the actor let go of it (a stop under way)."""

        async def running() -> None:
            self._links.add(link)
            try:
                await link.run()
            finally:
                self._links.discard(link)

        self.submit(running())

    def close(self, timeout: float) -> None:
        """Stop every link (each server's stdin closed, then its process tree killed), then the
        loop. A server that outlasts `timeout` is killed by its process group."""
        if not self._thread.is_alive():
            return

        async def stop_all() -> list[ServerLink]:
            links = list(self._links)
            await asyncio.gather(*(link.stop() for link in links), return_exceptions=True)
            return links

        links: list[ServerLink] = []
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            links = self.submit(stop_all()).result(timeout)
        for link in links:
            link.kill()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class ServerLink:
    """One server's connection, from its start to its end. `run` is the link's task; `call`
    and `stop` are awaited by other tasks of the same loop."""

    def __init__(
        self,
        name: str,
        gen: int,
        config: McpServerConfig,
        folder: Path,
        emit: Callable[[Any], None],
    ) -> None:
        self.name = name
        self.gen = gen
        self.config = config
        self.emit = emit
        self.pid_path = folder / f"{name}.pid"
        self.stderr_path = folder / f"{name}.stderr"
        self.pid: int | None = None
        self._client: Client | None = None
        self._stopping: asyncio.Event | None = None
        self._gone: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._relists: set[asyncio.Future[None]] = set()

    # -- the link's task ---------------------------------------------------------------------

    async def run(self) -> None:
        self._stopping, self._gone, self._done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._scope = anyio.CancelScope()  # what `stop` cancels, whatever the link is doing
        error: str | None = None
        try:
            with self._scope:
                error = await self._serve()
        except Exception as exc:  # whatever the SDK raised: the server did not come up
            error = _why(exc)
        finally:
            self._client = None
            self._done.set()
        if self._stopping.is_set() and error is None:
            self.emit(Down(self.name, self.gen, None, []))
        else:
            self.emit(Down(self.name, self.gen, error, self._tail()))

    async def _serve(self) -> str:
        folder = self.pid_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._end_leftover()
        with self._stderr() as errlog:
            async with Client(
                self._transport(errlog),  # a Transport: the SDK's own stdio or http client
                mode="legacy",
                message_handler=self._on_message,
                read_timeout_seconds=START_S,  # each request of the start (a call sets its own)
                cache=None,
            ) as client:
                self._client = client
                self.pid = self._read_pid()
                self.emit(Up(self.name, self.gen, self.pid, await self._list()))
                return await self._until_gone()

    def _transport(self, errlog: Any) -> Any:
        config = self.config
        if config.url is not None:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers=dict(config.headers), timeout=config.timeout_s)
            return streamable_http_client(config.url, http_client=http)
        assert config.command is not None
        env = get_default_environment() | dict(config.env)
        program = config.command[0]
        if shutil.which(program, path=env.get("PATH")) is None:
            raise _StartFailed(f"no program {program!r} (not found on PATH, or not executable)")
        if config.cwd is not None and not os.path.isdir(config.cwd):
            raise _StartFailed(f"its folder {config.cwd} does not exist")
        args = ["-c", _WRAP, str(self.pid_path), *config.command]
        params = StdioServerParameters(command="/bin/sh", args=args, env=env, cwd=config.cwd)
        return stdio_client(params, errlog=errlog)

    @contextlib.contextmanager
    def _stderr(self) -> Any:
        if self.config.url is not None:
            yield None
            return
        with contextlib.suppress(FileNotFoundError):
            if self.stderr_path.stat().st_size > STDERR_KEEP:
                self.stderr_path.unlink()
        fd = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as errlog:
            yield errlog

    def _read_pid(self) -> int | None:
        """The server's pid, which the shell wrote; written back with the process's start
        time, so that a later gateway can tell this very process from one that has its pid."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
            started = psutil.Process(pid).create_time()
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        self.pid_path.write_text(f"{pid} {started}\n")
        return pid

    def _end_leftover(self) -> None:
        """Kill what an earlier gateway's server of this name left running: a gateway killed
        with -9 cannot stop its servers, and one that ignores the end of its stdin (the spec's
        signal to exit) would run on beside the new one. Only the process the pid file names,
        with the start time it records: a pid used again since is left alone."""
        # No file, an old format, or the process is gone: nothing to end.
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid_text, started_text = self.pid_path.read_text().split()[:2]
            pid, started = int(pid_text), float(started_text)
            if abs(psutil.Process(pid).create_time() - started) < 0.01:
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    async def _until_gone(self) -> str:
        """Wait until the server is gone (why); `stop` cancels the wait."""
        assert self._gone is not None
        loop = asyncio.get_running_loop()
        fd = None
        if self.pid is not None:
            try:
                fd = os.pidfd_open(self.pid)
                loop.add_reader(fd, self._gone.set)
            except OSError:  # gone already
                self._gone.set()
        try:
            await self._gone.wait()
        finally:
            if fd is not None:
                loop.remove_reader(fd)
                os.close(fd)
        return "the server exited" if self.pid is not None else "the connection was lost"

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            task = asyncio.ensure_future(self._relist())
            self._relists.add(task)  # held until done (the loop keeps only a weak reference)
            task.add_done_callback(self._relists.discard)

    async def _relist(self) -> None:
        try:
            tools = await self._list()
        except Exception:
            return  # the server is going away: its Down says so
        self.emit(ToolsListed(self.name, self.gen, tools))

    async def _list(self) -> list[dict[str, Any]]:
        client = self._client
        assert client is not None
        listed: list[dict[str, Any]] = []
        cursor = None
        for _ in range(_LIST_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            listed += [_tool_view(tool) for tool in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
        return listed

    # -- used from other tasks ---------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call `tool`: {"output": text for the model, "is_error"} and, when it did not
        complete, "timed_out" or "lost" (the server went away during the call)."""
        client = self._client
        if client is None:
            return _failed(f"the MCP server {self.name!r} is not running", lost=False)
        timeout = self.config.timeout_s
        try:
            with anyio.fail_after(timeout):  # abandoning the request sends notifications/cancelled
                result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout + 5)
        except TimeoutError:
            message = (
                f"the MCP server {self.name!r} did not answer {tool} within {timeout:g} s "
                "(mcp.servers timeout_s); the call was cancelled"
            )
            return {**_failed(message, lost=False), "timed_out": True}
        except MCPError as err:
            if "closed" in str(err).lower():  # the connection ended under the call
                if self._gone is not None:
                    self._gone.set()
                message = (
                    f"the MCP server {self.name!r} stopped while {tool} ran ({err}); it was "
                    "not run again: check its effects before calling it again"
                )
                return _failed(message, lost=True)
            return _failed(f"{self.name}: {tool}: {err}", lost=False)
        except Exception as exc:  # a malformed answer, a transport error
            return _failed(f"{self.name}: {tool}: {_why(exc)}", lost=False)
        return describe(result)

    async def stop(self) -> None:
        """End the link wherever it is (starting, listing, running): the SDK's exit closes the
        server's stdin and kills its process tree, each wait bounded."""
        if self._stopping is None or self._done is None:
            return
        self._stopping.set()
        if self._scope is not None:
            self._scope.cancel()
        await self._done.wait()

    def kill(self) -> None:
        """The last resort of a stop that timed out: kill the server's process group (it runs
        in a session of its own)."""
        if self.pid is not None and (self._done is None or not self._done.is_set()):
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)

    # -- what went wrong ---------------------------------------------------------------------

    def _tail(self) -> list[str]:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                lines = f.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return lines[-TAIL_LINES:]


class _StartFailed(Exception):
    pass


def _why(exc: BaseException) -> str:
    """One line for a failure the SDK may wrap in exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, (_StartFailed, MCPError)) else f"{type(exc).__name__}: {text}"


def _failed(message: str, *, lost: bool) -> dict[str, Any]:
    return {"output": message, "is_error": True, **({"lost": True} if lost else {})}


def _tool_view(tool: types.Tool) -> dict[str, Any]:
    hints = (
        tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {}
    )
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.input_schema,
        "annotations": hints,
    }


def describe(result: types.CallToolResult) -> dict[str, Any]:
    """A tool's result as the model reads it: text content as it is, every other kind of
    content described in one line (what it is and how big), structured content as JSON when
    nothing else was said."""
    parts = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, (types.ImageContent, types.AudioContent)):
            size = len(item.data) * 3 // 4
            parts.append(f"[{item.type} content: {item.mime_type}, about {size} bytes, not shown]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource link: {item.uri}" + (f" ({item.name})]" if item.name else "]"))
        elif isinstance(item, types.EmbeddedResource):
            resource = item.resource
            text = getattr(resource, "text", None)
            if isinstance(text, str):
                parts.append(text)
            else:
                mime = resource.mime_type or "binary"
                parts.append(f"[resource {resource.uri}: {mime}, not shown]")
        else:
            parts.append(f"[{getattr(item, 'type', 'unknown')} content, not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return {"output": "\n".join(parts), "is_error": bool(result.is_error)}
