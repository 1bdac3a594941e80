"""`tek chat` and `tek sessions` as a person uses them, against real gateway processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tek_actors.testing import write_config
from tek_actors.testing.fake_providers import FakeProvider
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow


def _chat(home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
    )


def _say(chat: subprocess.Popen[str], text: str) -> str:
    """Type a line; the line of output that carries its answer."""
    assert chat.stdin is not None and chat.stdout is not None
    chat.stdin.write(text + "\n")
    chat.stdin.flush()
    while True:
        line = chat.stdout.readline()
        assert line, "tek chat ended before answering"
        if "You said:" in line:
            return line


def test_chat_starts_a_gateway_and_survives_its_crash(home: Path) -> None:
    chat = _chat(home)
    try:
        assert "You said: hello there" in _say(chat, "hello there")
        pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)  # the gateway dies mid-conversation
        assert tek(home, "gateway", "start").returncode == 0
        assert "You said: after the crash" in _say(chat, "after the crash")
        assert chat.stdin is not None and chat.stdout is not None
        chat.stdin.write("/model local fresh\n/undo\n/quit\n")
        chat.stdin.flush()
        rest = chat.stdout.read()
        assert chat.wait(30) == 0
        assert "now on local (2 messages left out; /undo)" in rest and "back to local (0" in rest
        listed = json.loads(tek(home, "--json", "sessions", "list").stdout)["items"]
        assert len(listed) == 1
        shown = tek(home, "sessions", "show", listed[0]["id"]).stdout.splitlines()
        assert shown == [
            "user> hello there",
            "local> (local model) You said: hello there",
            "user> after the crash",
            "local> (local model) You said: after the crash",
        ]  # every line once: nothing lost, nothing twice
        session = listed[0]["id"]
        plan = tek(home, "sessions", "switch", session, "local")
        assert plan.returncode == 0 and "it fits" in plan.stdout
        switched = tek(home, "sessions", "switch", session, "local", "--mode", "fresh")
        assert switched.returncode == 0 and "(2 left out)" in switched.stdout
        assert "back on local (0 left out)" in tek(home, "sessions", "undo", session).stdout
        nothing = tek(home, "sessions", "undo", session)
        assert nothing.returncode == 1 and "no switch to undo" in nothing.stderr
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
        for pipe in (chat.stdin, chat.stdout, chat.stderr):
            if pipe is not None:
                pipe.close()
        tek(home, "gateway", "stop")


def test_chat_says_when_a_fallback_answered(home: Path) -> None:
    with FakeProvider("openai") as server:
        server.script({"status": 503})  # the main model's provider fails: the chain goes on
        write_config(
            home,
            {
                "providers": {
                    "lab": {"kind": "openai", "base_url": server.base_url, "api_key": "k"}
                },
                "models": {"main": {"provider": "lab", "model": "m", "fallbacks": ["local"]}},
                "default_model": "main",
            },
        )
        chat = _chat(home)
        try:
            assert "You said: anyone there?" in _say(chat, "anyone there?")
            _, err = chat.communicate("/quit\n", timeout=30)
            assert chat.returncode == 0
            assert "[local (fallback after main)]" in err
        finally:
            if chat.poll() is None:
                chat.kill()
                chat.wait()
            tek(home, "gateway", "stop")
