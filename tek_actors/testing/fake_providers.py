"""Loopback HTTP servers that speak the OpenAI Chat Completions and Anthropic Messages APIs.

For testing provider adapters over real HTTP: `FakeProvider("openai")` or
`FakeProvider("anthropic")` serves on 127.0.0.1, records every request and answers with the
provider's own wire format, streaming (SSE over chunked transfer encoding) or not, as the request
asks. Without a script the answer is `"echo: <last user text>"`; scripted responses (consumed one
per completion request, first in first out) give errors, rate-limit headers, tool calls, slow or
dropped connections and mid-stream errors. Standard library only.

    with FakeProvider("anthropic") as fake:
        fake.script({"status": 529}, {"text": "hello", "chunk_delay_s": 0.01})
        ...  # point the adapter at fake.base_url
        assert fake.requests[0].headers["x-api-key"] == "sk-test"

Script keys (all optional): status, error_type, error_message, error_code, headers, text,
tool_calls ([{"id", "name", "arguments"}]), usage ({"input_tokens", "output_tokens"}), delay_s,
chunk_delay_s, drop_after_chunks, midstream_error ({"type", "message"}), finish_reason, close,
ignore_stream (answer one JSON body even when the request asked for a stream, as some servers
do).

A busy server, without timing: `hold()` makes every completion request wait once it is recorded
(before its script is taken) until the test lets it go with `release(n)`, oldest first;
`wait_for_held(n)` blocks until n wait at once. `stop()` lets held requests go unanswered.

    fake.hold()
    ...  # send calls
    fake.wait_for_held(1)   # one reached the server and waits there
    fake.release(1)         # it is answered now, with the next script

Like the real APIs, requests are checked before any script is consumed: a body must be a JSON
object with `model` and `messages` (Anthropic also `max_tokens`), and Anthropic requires the
`x-api-key` (else 401) and `anthropic-version` (else 400) headers.
"""

from __future__ import annotations

import io
import socket
import socketserver
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from tek_actors.testing._fake_wire import (
    _MODELS,
    _PHRASES,
    _anthropic_chunks,
    _anthropic_message,
    _before_drop,
    _Chunk,
    _dumps,
    _error,
    _invalid,
    _openai_chunks,
    _openai_completion,
    _parse,
    _reply,
)

__all__ = ["FakeProvider", "Recorded"]

KINDS = ("openai", "anthropic")
SCRIPT_KEYS = frozenset(
    {
        "status",
        "error_type",
        "error_message",
        "error_code",
        "headers",
        "text",
        "tool_calls",
        "usage",
        "delay_s",
        "chunk_delay_s",
        "drop_after_chunks",
        "midstream_error",
        "finish_reason",
        "close",
        "ignore_stream",
    }
)
_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float


class FakeProvider:
    """A fake "openai" or "anthropic" API on 127.0.0.1:port (0 = any free port)."""

    def __init__(self, kind: str, port: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self._port = port
        self._cond = threading.Condition()
        self._scripts: deque[dict[str, Any]] = deque()
        self._requests: list[Recorded] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._holding = False
        self._held: deque[threading.Event] = deque()  # one gate per held request, oldest first
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeProvider:
        """Bind and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("a FakeProvider starts once")
        self._server = _Server(self, self._port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tek-fake-{self.kind}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: pending delays end, open connections are cut, every thread is joined."""
        server, thread = self._server, self._thread
        if server is None or thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        self.release_all()
        server.shutdown()
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            _cut(connection)
        server.server_close()
        thread.join()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the FakeProvider is not started")
        port = self._server.server_address[1]
        return (
            f"http://127.0.0.1:{port}/v1" if self.kind == "openai" else f"http://127.0.0.1:{port}"
        )

    def script(self, *responses: dict[str, Any]) -> None:
        """Queue scripted responses, one per completion request, first in first out."""
        for response in responses:
            unknown = set(response) - SCRIPT_KEYS
            if unknown:
                raise ValueError(f"unknown script keys: {sorted(unknown)}")
        with self._cond:
            self._scripts.extend(dict(response) for response in responses)

    def clear(self) -> None:
        """Drop queued scripts and recorded requests."""
        with self._cond:
            self._scripts.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[Recorded]:
        """Block until at least n requests are recorded; TimeoutError if that takes too long."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"{len(self._requests)} of {n} requests after {timeout} s")
            return list(self._requests)

    def hold(self) -> None:
        """From now on, hold every completion request until `release` lets it go."""
        with self._cond:
            self._holding = True

    def release(self, n: int = 1) -> None:
        """Let the n oldest held requests go on; ValueError if fewer are held."""
        with self._cond:
            if n > len(self._held):
                raise ValueError(f"{len(self._held)} requests are held, not {n}")
            gates = [self._held.popleft() for _ in range(n)]
        for gate in gates:
            gate.set()

    def release_all(self) -> None:
        """Stop holding, and let every held request go on."""
        with self._cond:
            self._holding = False
            gates = list(self._held)
            self._held.clear()
        for gate in gates:
            gate.set()

    @property
    def held(self) -> int:
        with self._cond:
            return len(self._held)

    def wait_for_held(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least n requests are held at once; TimeoutError if that takes too
        long."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._held) >= n, timeout):
                raise TimeoutError(f"{len(self._held)} of {n} requests held after {timeout} s")

    def _gate(self) -> threading.Event | None:
        """A held request's gate (None when not holding)."""
        with self._cond:
            if not self._holding or self._stopping.is_set():
                return None
            gate = threading.Event()
            self._held.append(gate)
            self._cond.notify_all()
            return gate

    def _record(self, request: Recorded) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _next_script(self) -> dict[str, Any]:
        with self._cond:
            return self._scripts.popleft() if self._scripts else {}

    def _opened(self, connection: socket.socket) -> None:
        with self._cond:
            if self._stopping.is_set():
                _cut(connection)
            else:
                self._connections.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.discard(connection)


def _cut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def __init__(self, provider: FakeProvider, port: int) -> None:
        self.provider = provider
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's getfqdn (a DNS lookup)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def provider(self) -> FakeProvider:
        return cast(_Server, self.server).provider

    def setup(self) -> None:
        super().setup()
        threading.current_thread().name = f"tek-fake-{self.provider.kind}-conn"
        self.provider._opened(self.connection)

    def finish(self) -> None:
        self.provider._closed(self.connection)
        super().finish()

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        at = time.monotonic()
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = _parse(_read_body(self.rfile, headers))
        self.provider._record(Recorded(self.command, self.path, headers, body, at))
        kind, route = self.provider.kind, (self.command, self.path.split("?", 1)[0])
        if kind == "openai" and route == ("GET", "/v1/models"):
            self._send_json(200, _MODELS)
        elif route == ("POST", _PATHS[kind]):
            self._complete(headers, body)
        else:
            self._send_json(404, _error(kind, 404, f"Unknown request URL: {' '.join(route)}"))

    def _complete(self, headers: dict[str, str], body: dict[str, Any] | None) -> None:
        kind = self.provider.kind
        invalid = _invalid(kind, headers, body)
        if invalid or body is None:
            status, message = invalid or (400, "the body must be a JSON object")
            self._send_json(status, _error(kind, status, message))
            return
        gate = self.provider._gate()
        if gate is not None:
            gate.wait()
            if self.provider._stopping.is_set():
                self.close_connection = True
                return
        script = self.provider._next_script()
        if self._wait(script.get("delay_s")) or script.get("close"):
            self.close_connection = True
            return
        extra = {str(k): str(v) for k, v in script.get("headers", {}).items()}
        if "status" in script:
            status = int(script["status"])
            error = _error(
                kind,
                status,
                script.get("error_message"),
                script.get("error_type"),
                script.get("error_code"),
            )
            self._send_json(status, error, extra)
            return
        reply = _reply(kind, body, script)
        if body.get("stream") and not script.get("ignore_stream"):
            if kind == "openai":
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                chunks = _openai_chunks(reply, include_usage)
            else:
                chunks = _anthropic_chunks(reply)
            self._stream(
                chunks, extra, script.get("chunk_delay_s"), script.get("drop_after_chunks")
            )
        elif kind == "openai":
            self._send_json(200, _openai_completion(reply), extra)
        else:
            self._send_json(200, _anthropic_message(reply), extra)

    def _wait(self, seconds: float | None) -> bool:
        """Wait (when seconds is set); True if the server is stopping meanwhile."""
        return bool(seconds) and self.provider._stopping.wait(seconds)

    def _start(self, status: int, extra: dict[str, str]) -> None:
        self.send_response(status, _PHRASES.get(status, ""))
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        self.send_header(
            "x-request-id" if self.provider.kind == "openai" else "request-id", request_id
        )
        for name, value in extra.items():
            self.send_header(name, value)

    def _send_json(
        self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = _dumps(payload).encode()
        self._start(status, extra or {})
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self,
        chunks: list[_Chunk],
        extra: dict[str, str],
        chunk_delay: float | None,
        drop_after: int | None,
    ) -> None:
        self._start(200, extra)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = chunks if drop_after is None else _before_drop(chunks, drop_after)
        for i, chunk in enumerate(sent):
            if i and self._wait(chunk_delay):
                self.close_connection = True
                return
            data = chunk.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        if drop_after is None:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True


def _read_body(rfile: io.BufferedIOBase, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return rfile.read(int(headers.get("content-length") or 0))
    parts = []
    while (size := int(rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
        parts.append(rfile.read(size))
        rfile.readline()
    rfile.readline()
    return b"".join(parts)
