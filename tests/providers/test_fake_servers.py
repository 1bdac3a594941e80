"""The fake OpenAI and Anthropic servers (`tek_actors.testing.fake_providers`), driven over real
HTTP with httpx: wire formats, streaming, scripted faults, recording and a stop that never hangs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tek_actors.testing.fake_providers import FakeProvider

OPENAI_HEADERS = {"authorization": "Bearer sk-openai-test"}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
WEATHER = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "days": 3}}


def openai_body(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def anthropic_body(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {"model": "claude-test", "max_tokens": 100, "messages": messages, **extra}


def post(fake: FakeProvider, body: dict[str, Any], **headers: str) -> httpx.Response:
    path, auth = (
        ("/chat/completions", OPENAI_HEADERS)
        if fake.kind == "openai"
        else ("/v1/messages", ANTHROPIC_HEADERS)
    )
    with httpx.Client(base_url=fake.base_url, timeout=10) as client:
        return client.post(path, json=body, headers={**auth, **headers})


def stream_events(fake: FakeProvider, body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(event name, data) of every SSE event until the stream ends or the connection drops."""
    events: list[tuple[str | None, str]] = []
    path, auth = (
        ("/chat/completions", OPENAI_HEADERS)
        if fake.kind == "openai"
        else ("/v1/messages", ANTHROPIC_HEADERS)
    )
    with (
        httpx.Client(base_url=fake.base_url, timeout=10) as client,
        client.stream("POST", path, json={**body, "stream": True}, headers=auth) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        try:
            events.extend(parse_sse(response.iter_lines()))
        except httpx.RemoteProtocolError:
            events.append((None, "<dropped>"))
    return events


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, line.removeprefix("data: ")
            name = None


def openai_chunks(events: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in events if data not in ("[DONE]", "<dropped>")]


def anthropic_data(events: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in events if data != "<dropped>"]


def openai_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def anthropic_text(data: list[dict[str, Any]]) -> str:
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    return "".join(d["text"] for d in deltas if d["type"] == "text_delta")


def test_openai_non_stream_echoes_the_last_user_message() -> None:
    with FakeProvider("openai") as fake:
        body = openai_body(
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
            ]
        )
        response = post(fake, body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "gpt-test"
    choice = answer["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert choice["finish_reason"] == "stop"
    usage = answer["usage"]
    assert usage["completion_tokens"] == len("echo: hello there") // 4 + 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_openai_stream_reassembles_to_the_text_with_usage_and_done() -> None:
    with FakeProvider("openai") as fake:
        fake.script(
            {"text": "the quick brown fox", "usage": {"input_tokens": 7, "output_tokens": 4}}
        )
        events = stream_events(fake, openai_body(stream_options={"include_usage": True}))
    chunks = openai_chunks(events)
    assert events[-1] == (None, "[DONE]")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(pieces) > 1
    assert openai_text(chunks) == "the quick brown fox"
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_openai_stream_without_include_usage_has_no_usage() -> None:
    with FakeProvider("openai") as fake:
        chunks = openai_chunks(stream_events(fake, openai_body()))
    assert all("usage" not in c for c in chunks)
    assert openai_text(chunks) == "echo: hello there"


def test_anthropic_non_stream_echoes_the_last_user_message() -> None:
    with FakeProvider("anthropic") as fake:
        response = post(fake, anthropic_body())
    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "message"
    assert answer["id"].startswith("msg_")
    assert answer["role"] == "assistant"
    assert answer["model"] == "claude-test"
    assert answer["content"] == [{"type": "text", "text": "echo: hello there"}]
    assert answer["stop_reason"] == "end_turn"
    assert answer["stop_sequence"] is None
    assert answer["usage"] == {"input_tokens": len("hello there") // 4, "output_tokens": 5}


def test_anthropic_stream_has_the_real_event_sequence() -> None:
    with FakeProvider("anthropic") as fake:
        events = stream_events(fake, anthropic_body("one two three"))
    names = [name for name, _ in events]
    data = anthropic_data(events)
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") > 1
    assert all(d["type"] == name for name, d in zip(names, data, strict=True))
    start = data[0]["message"]
    assert start["content"] == [] and start["usage"]["output_tokens"] == 1
    assert data[2] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert anthropic_text(data) == "echo: one two three"
    assert data[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[-2]["usage"] == {"output_tokens": len("echo: one two three") // 4 + 1}


def test_openai_stream_tool_calls_reassemble() -> None:
    second = {"id": "call_2", "name": "get_time", "arguments": {}}
    with FakeProvider("openai") as fake:
        fake.script({"text": "let me check", "tool_calls": [WEATHER, second]})
        chunks = openai_chunks(stream_events(fake, openai_body()))
    calls: dict[int, dict[str, Any]] = {}
    argument_chunks: dict[int, int] = {0: 0, 1: 0}
    for chunk in chunks:
        for delta in (
            (chunk["choices"][0]["delta"].get("tool_calls") or []) if chunk["choices"] else []
        ):
            call = calls.setdefault(delta["index"], {"arguments": ""})
            if "id" in delta:
                assert delta["type"] == "function"
                assert delta["function"]["arguments"] == ""
                call.update(id=delta["id"], name=delta["function"]["name"])
            elif delta["function"]["arguments"]:
                argument_chunks[delta["index"]] += 1
            call["arguments"] += delta["function"]["arguments"]
    assert openai_text(chunks) == "let me check"
    assert calls[0] == {
        "id": "call_1",
        "name": "get_weather",
        "arguments": json.dumps(WEATHER["arguments"]),
    }
    assert json.loads(calls[1]["arguments"]) == {}
    assert argument_chunks[0] >= 2 and argument_chunks[1] >= 2
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_non_stream_tool_calls_have_string_arguments() -> None:
    with FakeProvider("openai") as fake:
        fake.script({"tool_calls": [WEATHER]})
        message = post(fake, openai_body()).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["content"] is None
    assert message["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(WEATHER["arguments"])},
        }
    ]


def test_anthropic_stream_tool_use_reassembles() -> None:
    with FakeProvider("anthropic") as fake:
        fake.script({"text": "let me check", "tool_calls": [WEATHER]})
        data = anthropic_data(stream_events(fake, anthropic_body()))
    starts = [d for d in data if d["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use"]
    assert starts[1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
    }
    partial = [
        d["delta"]["partial_json"]
        for d in data
        if d["type"] == "content_block_delta" and d["index"] == 1
    ]
    assert len(partial) >= 2
    assert json.loads("".join(partial)) == WEATHER["arguments"]
    assert anthropic_text(data) == "let me check"
    assert data[-2]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_non_stream_tool_use_and_tool_result_echo() -> None:
    with FakeProvider("anthropic") as fake:
        fake.script({"tool_calls": [WEATHER], "finish_reason": "max_tokens"})
        answer = post(fake, anthropic_body()).json()
        result = {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}
        follow_up = post(fake, anthropic_body(messages=[{"role": "user", "content": [result]}]))
    assert answer["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": WEATHER["arguments"]}
    ]
    assert answer["stop_reason"] == "max_tokens"
    assert follow_up.json()["content"] == [{"type": "text", "text": "tool result: sunny"}]


def test_scripted_429_carries_headers_and_is_consumed_once() -> None:
    with FakeProvider("openai") as fake:
        fake.script({"status": 429, "headers": {"retry-after": "2", "retry-after-ms": "1500"}})
        limited = post(fake, openai_body())
        after = post(fake, openai_body())
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.headers["retry-after-ms"] == "1500"
    assert limited.headers["content-length"] == str(len(limited.content))
    error = limited.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert error["message"]
    assert after.status_code == 200


def test_scripted_error_fields_override_the_defaults() -> None:
    with FakeProvider("openai") as fake:
        fake.script(
            {"status": 401},
            {
                "status": 400,
                "error_type": "invalid_request_error",
                "error_code": "context_length_exceeded",
                "error_message": "too long",
            },
        )
        unauthorized = post(fake, openai_body()).json()["error"]
        too_long = post(fake, openai_body()).json()["error"]
    assert (unauthorized["type"], unauthorized["code"]) == (
        "invalid_request_error",
        "invalid_api_key",
    )
    assert too_long == {
        "message": "too long",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }


def test_anthropic_529_overloaded() -> None:
    with FakeProvider("anthropic") as fake:
        fake.script(
            {
                "status": 529,
                "headers": {"anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z"},
            }
        )
        response = post(fake, anthropic_body())
    assert response.status_code == 529
    assert response.headers["anthropic-ratelimit-requests-reset"] == "2030-01-01T00:00:00Z"
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_anthropic_requires_its_headers() -> None:
    with FakeProvider("anthropic") as fake:
        fake.script({"text": "kept for a valid request"})
        with httpx.Client(base_url=fake.base_url, timeout=10) as client:
            no_version = client.post(
                "/v1/messages", json=anthropic_body(), headers={"x-api-key": "k"}
            )
            no_key = client.post(
                "/v1/messages", json=anthropic_body(), headers={"anthropic-version": "2023-06-01"}
            )
        valid = post(fake, anthropic_body())
        assert len(fake.requests) == 3
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert valid.json()["content"][0]["text"] == "kept for a valid request"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_drop_after_chunks_ends_the_stream_without_terminator(kind: str) -> None:
    with FakeProvider(kind) as fake:
        fake.script({"text": "one two three four five", "drop_after_chunks": 2})
        body = openai_body() if kind == "openai" else anthropic_body()
        events = stream_events(fake, body)
    assert events[-1] == (None, "<dropped>")
    if kind == "openai":
        chunks = openai_chunks(events)
        assert "[DONE]" not in [data for _, data in events]
        assert openai_text(chunks) == "one two "
        assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    else:
        data = anthropic_data(events)
        assert [d["type"] for d in data][-1] == "content_block_delta"
        assert anthropic_text(data) == "one two "


def test_anthropic_midstream_error_event_ends_the_stream() -> None:
    error = {"type": "overloaded_error", "message": "Overloaded"}
    with FakeProvider("anthropic") as fake:
        fake.script({"text": "partial answer", "midstream_error": error})
        events = stream_events(fake, anthropic_body())
    assert events[-1] == (
        "error",
        json.dumps({"type": "error", "error": error}, separators=(",", ":")),
    )
    names = [name for name, _ in events]
    assert "message_stop" not in names and "message_delta" not in names
    assert anthropic_text(anthropic_data(events)) == "partial answer"


def test_close_drops_the_connection_before_any_response() -> None:
    with FakeProvider("openai") as fake:
        fake.script({"close": True})
        with pytest.raises(httpx.RemoteProtocolError):
            post(fake, openai_body())
        assert post(fake, openai_body()).status_code == 200
        assert len(fake.requests) == 2


def test_requests_are_recorded_with_headers_and_body() -> None:
    with FakeProvider("openai") as openai, FakeProvider("anthropic") as anthropic:
        openai.script({"status": 500})
        post(openai, openai_body("hi"))
        post(anthropic, anthropic_body("hi"))
        with httpx.Client(base_url=openai.base_url, timeout=10) as client:
            models = client.get("/models")
        first, second = openai.requests
        (recorded,) = anthropic.requests
    assert models.json() == {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
    }
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-openai-test"
    assert first.body == openai_body("hi")
    assert (second.method, second.path, second.body) == ("GET", "/v1/models", None)
    assert first.at <= second.at
    assert recorded.path == "/v1/messages"
    assert recorded.headers["x-api-key"] == "sk-ant-test"
    assert recorded.headers["anthropic-version"] == "2023-06-01"
    assert recorded.body == anthropic_body("hi")


def test_stop_interrupts_a_delayed_request() -> None:
    with ThreadPoolExecutor(1) as pool, FakeProvider("openai") as fake:
        fake.script({"delay_s": 300})
        pending = pool.submit(post, fake, openai_body())
        fake.wait_for_requests(1)
        fake.stop()
        with pytest.raises(httpx.TransportError):
            pending.result()


def test_stream_is_readable_chunk_by_chunk() -> None:
    with (
        FakeProvider("anthropic") as fake,
        httpx.Client(base_url=fake.base_url, timeout=10) as client,
    ):
        fake.script({"chunk_delay_s": 300})
        body = anthropic_body(stream=True)
        with client.stream(
            "POST", "/v1/messages", json=body, headers=ANTHROPIC_HEADERS
        ) as response:
            first = next(parse_sse(response.iter_lines()))
        assert first[0] == "message_start"


def test_a_client_leaving_mid_stream_does_not_disturb_the_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeProvider("openai") as fake, httpx.Client(base_url=fake.base_url, timeout=10) as client:
        fake.script({"text": "word " * 2000, "chunk_delay_s": 0.0001})
        body = openai_body(stream=True)
        with client.stream(
            "POST", "/chat/completions", json=body, headers=OPENAI_HEADERS
        ) as response:
            next(response.iter_lines())
        assert (
            post(fake, openai_body()).json()["choices"][0]["message"]["content"]
            == "echo: hello there"
        )
    assert capsys.readouterr().err == ""


def test_wait_for_requests_and_clear() -> None:
    with FakeProvider("openai") as fake, ThreadPoolExecutor(3) as pool:
        fake.script({"text": "scripted"})
        for _ in range(3):
            pool.submit(post, fake, openai_body())
        assert len(fake.wait_for_requests(3)) == 3
        with pytest.raises(TimeoutError):
            fake.wait_for_requests(4, timeout=0.05)
        pool.shutdown()
        fake.script({"text": "dropped by clear"})
        fake.clear()
        assert fake.requests == []
        assert (
            post(fake, openai_body()).json()["choices"][0]["message"]["content"]
            == "echo: hello there"
        )


def test_unknown_script_keys_are_refused() -> None:
    fake = FakeProvider("openai")
    with pytest.raises(ValueError, match="dealy_s"):
        fake.script({"dealy_s": 1})


def test_held_requests_wait_until_released_oldest_first() -> None:
    with ThreadPoolExecutor(3) as pool, FakeProvider("openai") as fake:
        fake.hold()
        fake.script({"text": "first out"}, {"text": "second out"})
        older = pool.submit(post, fake, openai_body("a"))
        fake.wait_for_held(1)
        newer = pool.submit(post, fake, openai_body("b"))
        fake.wait_for_held(2)
        assert not older.done() and not newer.done() and fake.held == 2
        fake.release(1)
        assert older.result(10).json()["choices"][0]["message"]["content"] == "first out"
        assert not newer.done()
        with pytest.raises(ValueError, match="1 requests are held, not 2"):
            fake.release(2)
        fake.release_all()
        assert newer.result(10).json()["choices"][0]["message"]["content"] == "second out"
        assert post(fake, openai_body()).status_code == 200  # no longer holding


def test_stop_lets_held_requests_go_unanswered() -> None:
    with ThreadPoolExecutor(1) as pool, FakeProvider("anthropic") as fake:
        fake.hold()
        pending = pool.submit(post, fake, anthropic_body())
        fake.wait_for_held(1)
        fake.stop()
        with pytest.raises(httpx.TransportError):
            pending.result(10)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_ignore_stream_answers_a_stream_request_with_one_json_body(kind: str) -> None:
    with FakeProvider(kind) as fake:
        fake.script({"ignore_stream": True, "text": "whole"})
        body = openai_body(stream=True) if kind == "openai" else anthropic_body(stream=True)
        response = post(fake, body)
        assert response.headers["content-type"] == "application/json"
        payload = response.json()
        text = (
            payload["choices"][0]["message"]["content"]
            if kind == "openai"
            else payload["content"][0]["text"]
        )
        assert text == "whole"
