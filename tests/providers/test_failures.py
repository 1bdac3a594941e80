"""How provider answers are classified: every rate-limit header, scrubbing, billing, context."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx
import pytest

from tek_actors.providers.failures import classify, from_transport, retry_after, scrub


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "17"}, 17.0),
        ({"Retry-After-Ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the more precise one wins
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "20ms"}, 0.02),
        ({}, None),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after_reads_every_header_providers_use(
    headers: dict[str, str], expected: float | None
) -> None:
    assert retry_after(headers) == expected


def test_retry_after_reads_dates_and_anthropic_resets() -> None:
    in_a_minute = time.time() + 60
    http_date = formatdate(in_a_minute, usegmt=True)
    assert 55 < (retry_after({"retry-after": http_date}) or 0) <= 60
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(in_a_minute))
    reset = retry_after({"anthropic-ratelimit-requests-reset": stamp})
    assert reset is not None and 55 < reset <= 60


def test_scrub_cuts_keys_bearer_tokens_and_length() -> None:
    text = scrub(
        "Incorrect API key provided: sk-proj-abc123***xyz. Bearer sk-live-99", "sk-live-99"
    )
    assert "abc123" not in text and "sk-live-99" not in text and "<redacted>" in text
    assert len(scrub("x" * 1000)) == 300


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            429,
            '{"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}}',
            "rate_limited",
        ),
        (
            429,
            '{"error": {"code": "insufficient_quota", "message": "You exceeded your quota"}}',
            "quota",
        ),
        (
            400,
            '{"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low"}}',
            "quota",
        ),
        (402, "", "quota"),
        (401, '{"error": {"message": "bad key"}}', "auth"),
        (403, "forbidden", "auth"),
        (
            529,
            '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "overloaded",
        ),
        (503, "", "overloaded"),
        (500, "<html>oops</html>", "server_error"),
        (502, "", "server_error"),
        (404, '{"error": {"message": "model not found"}}', "model_not_found"),
        (404, '{"error": {"message": "Unknown request URL: POST /v2/x"}}', "bad_request"),
        (
            413,
            '{"type": "error", "error": {"type": "request_too_large", "message": "too big"}}',
            "context_too_long",
        ),
    ],
)
def test_each_status_and_body_is_classified(status: int, body: str, kind: str) -> None:
    failure = classify(status, {}, body, provider="p")
    assert failure.kind == kind and failure.status == status and failure.message.startswith("p:")


def test_llama_cpp_context_overflow_has_its_numbers() -> None:
    body = '{"error": {"message": "the request exceeds the available context size: requested 9000 tokens, context length of 8192"}}'
    failure = classify(400, {}, body, provider="p")
    assert failure.kind == "context_too_long"
    assert failure.details == {"limit_tokens": 8192, "prompt_tokens": 9000}


def test_transport_errors_say_whether_output_had_started() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/")
    assert (
        from_transport(
            httpx.ConnectError("refused", request=request), provider="p", started=False
        ).kind
        == "connection"
    )
    assert (
        from_transport(httpx.ReadTimeout("slow", request=request), provider="p", started=False).kind
        == "timeout"
    )
    broken = from_transport(
        httpx.RemoteProtocolError("cut", request=request), provider="p", started=True
    )
    assert broken.kind == "stream_broken" and broken.started


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # OpenAI
        (
            404,
            '{"error": {"message": "The model `gpt-4.1-x` does not exist or you do not have '
            'access to it.", "type": "invalid_request_error", "code": "model_not_found"}}',
        ),
        # vLLM, a dot in the name
        (404, '{"object": "error", "message": "The model `Llama-3.1-8B` does not exist."}'),
        # Ollama
        (404, '{"error": "model \\"llama9\\" not found, try pulling it first"}'),
        # LiteLLM's proxy
        (400, '{"error": {"message": "Invalid model name passed in model=nope."}}'),
        # Anthropic
        (404, '{"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}'),
    ],
)
def test_a_model_the_provider_does_not_serve_is_the_model_s_failure(status: int, body: str) -> None:
    failure = classify(status, {}, body, provider="p")
    assert failure.kind == "model_not_found" and failure.scope == "model"


@pytest.mark.parametrize(
    ("status", "body", "scope"),
    [
        (429, "", "model"),
        (529, '{"type": "error", "error": {"type": "overloaded_error"}}', "model"),
        (503, '{"error": {"message": "the model is overloaded"}}', "model"),
        (503, "", "provider"),  # a plain Service Unavailable is the server's
        (500, "", "provider"),
        (401, "", "provider"),
        (429, '{"error": {"code": "insufficient_quota"}}', "provider"),
    ],
)
def test_each_answer_belongs_to_the_model_or_to_the_provider(
    status: int, body: str, scope: str
) -> None:
    assert classify(status, {}, body, provider="p").scope == scope


def test_a_context_overflow_is_not_a_missing_model() -> None:
    body = (
        '{"error": {"code": "context_length_exceeded", "message": "This model\'s maximum '
        'context length is 8192 tokens. However, the model does not exist in 9000 tokens."}}'
    )
    assert classify(400, {}, body, provider="p").kind == "context_too_long"


def test_not_reaching_the_server_is_the_provider_s_and_a_slow_answer_the_model_s() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/")
    refused = httpx.ConnectError("refused", request=request)
    assert from_transport(refused, provider="p", started=False).scope == "provider"
    connecting = httpx.ConnectTimeout("slow", request=request)
    assert from_transport(connecting, provider="p", started=False).scope == "provider"
    waiting = httpx.ReadTimeout("slow", request=request)
    assert from_transport(waiting, provider="p", started=False).scope == "model"
