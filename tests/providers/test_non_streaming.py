"""A server that ignores `stream: true` and answers one JSON body (some proxies and small servers
do) is read as that body, in both APIs: text, tool calls, usage and finish reason, never
`stream_broken`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tek_actors import Client, Gateway, InvalidValue
from tek_actors.testing.fake_providers import FakeProvider
from tests.providers.conftest import ask, provider_config

Start = Callable[..., tuple[Gateway, Client]]
KINDS = ["openai", "anthropic"]


@pytest.mark.parametrize("kind", KINDS)
def test_one_json_body_answering_a_stream_request_is_the_reply(
    kind: str, second_openai: FakeProvider, gateway_on: Start
) -> None:
    with FakeProvider(kind) as server:
        server.script(
            {
                "ignore_stream": True,
                "text": "all at once",
                "usage": {"input_tokens": 11, "output_tokens": 3},
            }
        )
        _, client = gateway_on(provider_config(server, second_openai))
        client.hello(topics=["provider.delta"])
        reply = ask(client, stream=True)
        assert reply["text"] == "all at once" and reply["finish_reason"] == "stop"
        assert reply["provider"] == "p1" and not reply["incomplete"]
        assert reply["usage"] == {"input_tokens": 11, "output_tokens": 3}
        delta = client.next_event(5)
        assert delta is not None and delta["data"]["text"] == "all at once"  # in one piece
        sent = server.requests[0].body
        assert sent is not None and sent["stream"] is True
        assert second_openai.requests == []  # not taken for a broken stream


@pytest.mark.parametrize("kind", KINDS)
def test_tool_calls_in_one_json_body_come_back_whole(kind: str, gateway_on: Start) -> None:
    calls = [
        {"id": "c1", "name": "shell", "arguments": {"argv": ["ls"]}},
        {"id": "c2", "name": "read_file", "arguments": {"path": "/tmp/x"}},
    ]
    with FakeProvider(kind) as server:
        server.script({"ignore_stream": True, "text": "looking", "tool_calls": calls})
        _, client = gateway_on(provider_config(server))
        reply = ask(client, "list files")
        assert reply["tool_calls"] == calls and reply["text"] == "looking"
        assert reply["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("kind", KINDS)
def test_an_error_status_with_a_json_body_is_still_an_error(
    kind: str, second_openai: FakeProvider, gateway_on: Start
) -> None:
    with FakeProvider(kind) as server:
        server.script({"status": 400, "error_message": "max_tokens: too large"})
        _, client = gateway_on(provider_config(server, second_openai))
        with pytest.raises(InvalidValue, match="too large"):
            ask(client)
        assert second_openai.requests == []
