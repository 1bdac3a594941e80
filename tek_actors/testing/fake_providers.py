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
chunk_delay_s, drop_after_chunks, midstream_error ({"type", "message"}), finish_reason, close.

Like the real APIs, requests are checked before any script is consumed: a body must be a JSON
object with `model` and `messages` (Anthropic also `max_tokens`), and Anthropic requires the
`x-api-key` (else 401) and `anthropic-version` (else 400) headers.
"""

from __future__ import annotations

import io
import json
import re
import socket
import socketserver
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, cast

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
    }
)
_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_PHRASES = {status.value: status.phrase for status in HTTPStatus} | {529: "Overloaded"}
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


class _Chunk(NamedTuple):
    """One server-sent event; `content` marks text and tool-argument deltas."""

    event: str | None
    data: dict[str, Any] | str
    content: bool = False

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else _dumps(self.data)
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {data}\n\n".encode()


@dataclass(frozen=True)
class _Reply:
    id: str
    model: str
    text: str
    tool_calls: list[dict[str, Any]]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    midstream_error: dict[str, Any] | None


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
        if body.get("stream"):
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


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _invalid(
    kind: str, headers: dict[str, str], body: dict[str, Any] | None
) -> tuple[int, str] | None:
    """The (status, message) the real API would refuse this request with, if any."""
    if kind == "anthropic" and "x-api-key" not in headers:
        return 401, "x-api-key header is required"
    if kind == "anthropic" and "anthropic-version" not in headers:
        return 400, "anthropic-version: header is required"
    if body is None:
        return 400, "the body must be a JSON object"
    required = ("model", "messages", "max_tokens") if kind == "anthropic" else ("model", "messages")
    missing = [key for key in required if key not in body]
    if missing:
        return 400, f"{missing[0]}: Field required"
    if not isinstance(body["messages"], list):
        return 400, "messages: Input should be a valid list"
    return None


def _error(
    kind: str,
    status: int,
    message: str | None = None,
    type_: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """An error body in the provider's own format, typed by status unless told otherwise."""
    message = message or _PHRASES.get(status, f"error {status}")
    if kind == "openai":
        default = _OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        type_ = type_ or default[0]
        code = code or default[1]
        return {
            "error": {
                "message": message,
                "type": type_,
                "param": None,
                "code": code,
            }
        }
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    type_ = type_ or _ANTHROPIC_ERRORS.get(status, fallback)
    return {"type": "error", "error": {"type": type_, "message": message}}


_MODELS = {
    "object": "list",
    "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
}


def _text_of(content: object) -> str:
    """The text of a message's content: a string, or text parts/blocks (and tool results)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "tool_result":
            texts.append(_text_of(part.get("content", "")))
    return " ".join(texts)


def _echo(kind: str, messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if kind == "anthropic" and isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            return f"tool result: {_text_of(results[0].get('content', ''))}"
    return f"echo: {_text_of(content)}"


def _reply(kind: str, body: dict[str, Any], script: dict[str, Any]) -> _Reply:
    messages: list[Any] = body["messages"]
    text = script.get("text", "" if "tool_calls" in script else _echo(kind, messages))
    prefix = "call_" if kind == "openai" else "toolu_"
    calls = [
        {
            "id": call.get("id") or f"{prefix}{uuid.uuid4().hex[:24]}",
            "name": call["name"],
            "arguments": call.get("arguments", {}),
        }
        for call in script.get("tool_calls", [])
    ]
    if kind == "openai":
        stop_reason = "tool_calls" if calls else "stop"
    else:
        stop_reason = "tool_use" if calls else "end_turn"
    usage = script.get("usage", {})
    chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    midstream = script.get("midstream_error")
    return _Reply(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if kind == "openai"
        else f"msg_{uuid.uuid4().hex[:24]}",
        model=str(body["model"]),
        text=text,
        tool_calls=calls,
        stop_reason=script.get("finish_reason", stop_reason),
        input_tokens=usage.get("input_tokens", chars // 4),
        output_tokens=usage.get("output_tokens", len(text) // 4 + 1),
        midstream_error=None
        if midstream is None
        else {"type": "api_error", "message": "Internal server error", **midstream},
    )


def _words(text: str) -> list[str]:
    """The text in pieces of one word each (with the spaces that follow it)."""
    return re.findall(r"\S+\s*|\s+", text)


def _pieces(text: str, parts: int = 3) -> list[str]:
    """The text in up to `parts` pieces (two or more when it has two characters or more)."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _before_drop(chunks: list[_Chunk], drop_after: int) -> list[_Chunk]:
    """The chunks sent before the connection drops: up to the `drop_after`-th content chunk,
    and never the terminator (the last chunk)."""
    content = [i for i, chunk in enumerate(chunks) if chunk.content]
    if drop_after == 0 and content:
        return chunks[: content[0]]
    if 0 < drop_after <= len(content):
        return chunks[: content[drop_after - 1] + 1]
    return chunks[:-1]


def _openai_tool_calls(reply: _Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for call in reply.tool_calls
    ]


def _openai_usage(reply: _Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _openai_completion(reply: _Reply) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text or (None if reply.tool_calls else ""),
    }
    if reply.tool_calls:
        message["tool_calls"] = _openai_tool_calls(reply)
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.stop_reason}
        ],
        "usage": _openai_usage(reply),
    }


def _openai_chunks(reply: _Reply, include_usage: bool) -> list[_Chunk]:
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
        payload = {
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": reply.model,
            "choices": choices,
        }
        return {**payload, "usage": usage} if include_usage else payload

    def delta(delta: dict[str, Any], content: bool = False, finish: str | None = None) -> _Chunk:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _Chunk(None, chunk([choice]), content)

    chunks = [delta({"role": "assistant", "content": ""})]
    chunks += [delta({"content": piece}, content=True) for piece in _words(reply.text)]
    for index, call in enumerate(_openai_tool_calls(reply)):
        function = call["function"]
        start = {**call, "function": {"name": function["name"], "arguments": ""}}
        chunks.append(delta({"tool_calls": [{"index": index, **start}]}))
        for piece in _pieces(function["arguments"]):
            part = {"index": index, "function": {"arguments": piece}}
            chunks.append(delta({"tool_calls": [part]}, content=True))
    if reply.midstream_error:
        error = {"message": reply.midstream_error["message"], "type": reply.midstream_error["type"]}
        return [*chunks, _Chunk(None, {"error": {**error, "param": None, "code": None}})]
    chunks.append(delta({}, finish=reply.stop_reason))
    if include_usage:
        chunks.append(_Chunk(None, chunk([], _openai_usage(reply))))
    return [*chunks, _Chunk(None, "[DONE]")]


def _anthropic_blocks(reply: _Reply) -> list[dict[str, Any]]:
    text = [{"type": "text", "text": reply.text}] if reply.text else []
    tools = [
        {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["arguments"]}
        for call in reply.tool_calls
    ]
    return text + tools


def _anthropic_message(reply: _Reply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": _anthropic_blocks(reply),
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _anthropic_chunks(reply: _Reply) -> list[_Chunk]:
    def event(name: str, content: bool = False, **fields: Any) -> _Chunk:
        return _Chunk(name, {"type": name, **fields}, content)

    message = {
        **_anthropic_message(reply),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    chunks = [event("message_start", message=message), event("ping")]
    for index, block in enumerate(_anthropic_blocks(reply)):
        if block["type"] == "text":
            start = {**block, "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _words(block["text"])]
        else:
            start = {**block, "input": {}}
            pieces = _pieces(json.dumps(block["input"]))
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        chunks.append(event("content_block_start", index=index, content_block=start))
        chunks += [event("content_block_delta", True, index=index, delta=d) for d in deltas]
        chunks.append(event("content_block_stop", index=index))
    if reply.midstream_error:
        return [*chunks, event("error", error=reply.midstream_error)]
    stop = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    chunks.append(event("message_delta", delta=stop, usage={"output_tokens": reply.output_tokens}))
    return [*chunks, event("message_stop")]
