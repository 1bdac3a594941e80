"""Against a real multi-model server: LiteLLM's proxy, run offline with mock responses. One model
answers every call with a 429 (`mock_response: litellm.RateLimitError`); the gateway must open
that model's breaker and answer from another model of the same proxy.

Needs `litellm[proxy]`, which is not a dependency of tek_actors (it is large). Install it in any
virtualenv and point TEK_TEST_LITELLM at its `litellm` executable (or have `litellm` on PATH):

    python -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'
    TEK_TEST_LITELLM=/tmp/litellm/bin/litellm pytest -m slow tests/providers/test_litellm_proxy.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tek_actors import Client, Gateway
from tests.providers.conftest import ask

pytestmark = pytest.mark.slow

Start = Callable[..., tuple[Gateway, Client]]
MASTER_KEY = "sk-tek-litellm-test-0001"
CONFIG = f"""\
model_list:
  - model_name: busy-model
    litellm_params:
      model: openai/busy-model
      api_key: sk-not-used
      mock_response: litellm.RateLimitError
  - model_name: good-model
    litellm_params:
      model: openai/good-model
      api_key: sk-not-used
      mock_response: "hello from the good model"
litellm_settings:
  num_retries: 0
general_settings:
  master_key: {MASTER_KEY}
"""
START_S = 120.0  # it imports a great deal before it listens


def _litellm() -> str | None:
    found = os.environ.get("TEK_TEST_LITELLM") or shutil.which("litellm")
    beside = Path(sys.executable).with_name("litellm")
    return found or (str(beside) if beside.exists() else None)


@pytest.fixture
def litellm_proxy(tmp_path: Path) -> Iterator[str]:
    """The proxy's OpenAI base URL, on a loopback port the system chose."""
    executable = _litellm()
    if executable is None:
        pytest.skip(
            "litellm's proxy is not installed: pip install 'litellm[proxy]' (in any venv) and "
            "set TEK_TEST_LITELLM to its litellm executable"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "litellm.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # offline: no price list fetch
    proc = subprocess.Popen(
        [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    up = threading.Event()  # it listens
    settled = threading.Event()  # it listens, or its output ended (it exited)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Uvicorn running on" in line:
                up.set()
                settled.set()
        settled.set()

    reader = threading.Thread(target=read, name="tek-test-litellm-log", daemon=True)
    reader.start()
    try:
        settled.wait(START_S)
        if not up.is_set():
            pytest.fail("the proxy did not start:\n" + "".join(lines[-30:]))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)
        reader.join(15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_rate_limited_model_of_a_litellm_proxy_leaves_its_other_models_in_the_chain(
    litellm_proxy: str, gateway_on: Start
) -> None:
    doc = {
        "providers": {
            "proxy": {"kind": "openai", "base_url": litellm_proxy, "api_key": MASTER_KEY}
        },
        "models": {
            "busy": {"provider": "proxy", "model": "busy-model", "fallbacks": ["good"]},
            "good": {"provider": "proxy", "model": "good-model"},
            "ghost": {"provider": "proxy", "model": "no-such-model", "fallbacks": ["good"]},
        },
        "default_model": "busy",
    }
    _, client = gateway_on(doc)
    reply = ask(client, stream=True)
    assert reply["text"] == "hello from the good model"
    assert reply["model"] == "good" and reply["fallback_from"] == ["busy"]
    proxy = client.call("providers.status")["providers"]["proxy"]
    assert proxy["state"] == "healthy"
    assert proxy["models"]["busy-model"]["state"] == "rate_limited"
    assert "RateLimitError" in proxy["models"]["busy-model"]["last_error"]
    assert proxy["models"]["good-model"]["state"] == "healthy"
    again = ask(client)
    assert again["model"] == "good" and again["fallback_from"] == []  # busy's breaker is open
    unknown = ask(client, model="ghost")  # "Invalid model name": that model's, too
    assert unknown["model"] == "good" and unknown["fallback_from"] == ["ghost"]
    models = client.call("providers.status")["providers"]["proxy"]["models"]
    assert models["no-such-model"]["state"] == "open"
    assert client.call("providers.status")["providers"]["proxy"]["state"] == "healthy"
