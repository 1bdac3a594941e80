"""`tek setup` as a person answers it (stdin, or a pseudo-terminal for the typed key): where the
key comes from (an environment variable, typed, or none), the warning that the *gateway* reads
the variable, and the closing `providers test` of the new provider, against a real gateway and
a real (loopback) OpenAI-compatible server."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tek_actors.testing.fake_providers import FakeProvider
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow

KEY = "sk-test-0123456789abcdef-SETUP"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as server:
        yield server


@pytest.fixture
def stopped(home: Path) -> Iterator[None]:
    """Whatever gateway a test (or the setup it runs) started on `home` is stopped after."""
    yield
    assert tek(home, "gateway", "stop").returncode == 0


def _setup(
    home: Path, answers: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LAB_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "setup"],
        capture_output=True,
        text=True,
        timeout=120,
        input="".join(f"{a}\n" for a in answers),
        env={**environ, "TEK_LOG_LEVEL": "WARNING", **(env or {})},
    )


def _provider(base_url: str, key: list[str]) -> list[str]:
    """Answers of the provider step: kind, name, base URL, the key's source (and what it
    needs), alias, model id, context window."""
    return ["openai", "lab", base_url, *key, "fast", "qwen", "32768"]


def test_a_keyless_local_server_is_set_up_and_tested_on_a_gateway_setup_starts(
    home: Path, fake: FakeProvider, stopped: None
) -> None:
    # "none" is the default for a server on loopback: an empty answer takes it
    done = _setup(home, [*_provider(fake.base_url, [""]), "fast", "ask", "y"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[none]" in done.stdout  # the key question, its default shown
    assert "gateway started (pid" in done.stdout
    assert "lab answered in" in done.stdout and "setup complete" in done.stdout
    doc = json.loads((home / "config.json").read_text())
    assert doc["providers"]["lab"] == {"kind": "openai", "base_url": fake.base_url}
    (request,) = fake.requests
    assert "authorization" not in request.headers
    assert request.body is not None and request.body["model"] == "qwen"


def test_a_typed_key_is_never_shown_and_is_kept_in_config_json_only(
    home: Path, fake: FakeProvider, stopped: None
) -> None:
    setup = pexpect.spawn(
        sys.executable,
        ["-m", "tek_actors", "--home", str(home), "setup"],
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 250),
    )
    seen = io.StringIO()
    setup.logfile_read = seen  # everything the terminal showed, echo included
    try:
        answers = [
            ("Which provider?", "openai"),
            ("A name for this provider", "lab"),
            ("Base URL", fake.base_url),
            ("Its API key", "type"),
            ("API key (not shown", KEY),
            ("A short alias", "fast"),
            ("Model id", "qwen"),
            ("Context window", "32768"),
            ("Default model alias", "fast"),
            ("Before a tool runs", "ask"),
            ("Start the gateway now to test lab?", "y"),
        ]
        for question, answer in answers:
            setup.expect_exact(question)
            setup.sendline(answer)
        setup.expect_exact("lab answered in")
        setup.expect(pexpect.EOF)
    finally:
        setup.close(force=True)
    assert setup.exitstatus == 0, seen.getvalue()
    assert f"api_key: <redacted> ({len(KEY)} characters)" in seen.getvalue()
    assert KEY not in seen.getvalue()  # not echoed as typed, nor shown afterwards
    assert json.loads((home / "config.json").read_text())["providers"]["lab"]["api_key"] == KEY
    assert stat.S_IMODE(os.stat(home / "config.json").st_mode) == 0o600
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"
    listed = tek(home, "--json", "providers", "list")
    assert KEY not in listed.stdout and "in config.json" in listed.stdout


def test_a_key_variable_the_running_gateway_lacks_is_explained(
    home: Path, fake: FakeProvider, stopped: None
) -> None:
    started = tek(home, "gateway", "start")  # from an environment without LAB_KEY
    assert started.returncode == 0, started.stderr
    done = _setup(
        home, [*_provider(fake.base_url, ["env", "LAB_KEY"]), "fast", "ask"], {"LAB_KEY": KEY}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    out = " ".join(done.stdout.split())  # the notes are long lines: compare their words
    assert "the gateway reads $LAB_KEY from its own environment, not from this shell" in out
    assert "(where it is set)" in out
    assert "whether its environment has $LAB_KEY cannot be seen from here" in out
    assert "lab failed: the gateway has no $LAB_KEY in its environment" in out
    assert "setup is saved, but provider lab does not work yet" in out
    assert not fake.requests  # nothing was sent without the key
    assert KEY not in done.stdout + done.stderr
    provider = json.loads((home / "config.json").read_text())["providers"]["lab"]
    assert provider["api_key_env"] == "LAB_KEY" and "api_key" not in provider
    # what the advice says: a gateway started where the variable is set has the key
    assert tek(home, "gateway", "stop").returncode == 0
    again = subprocess.run(
        [sys.executable, "-m", "tek_actors", "--home", str(home), "gateway", "start"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TEK_LOG_LEVEL="WARNING", LAB_KEY=KEY),
    )
    assert again.returncode == 0, again.stderr
    tested = tek(home, "providers", "test", "lab")
    assert tested.returncode == 0 and "lab answered" in tested.stdout, tested.stderr
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_server_that_does_not_answer_is_named_in_words(home: Path, stopped: None) -> None:
    with FakeProvider("openai") as gone:
        url = gone.base_url  # a loopback port that nothing serves once it is stopped
    done = _setup(home, [*_provider(url, ["none"]), "fast", "ask", "y"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"lab failed: nothing answers at {url}: is the server running" in done.stdout
    assert "tek providers test lab" in done.stdout


def test_declining_the_test_starts_no_gateway(home: Path) -> None:
    done = _setup(home, [*_provider("http://127.0.0.1:9/v1", ["none"]), "fast", "ask", "n"])
    assert done.returncode == 0, done.stderr
    assert "not tested: `tek gateway start`, then `tek providers test lab`" in done.stdout
    assert not (home / "run" / "gateway.json").exists()


# -- the loopback server that providers.md offers for trying a provider out -------------------

TOOL = Path(__file__).resolve().parents[2] / "tools" / "fake_providers.py"


def test_the_fake_provider_tool_says_which_python_it_needs() -> None:
    # -I -S: an interpreter without site-packages, as a python other than the venv's is
    bare = subprocess.run(
        [sys.executable, "-I", "-S", str(TOOL), "--kind", "openai"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bare.returncode == 1 and "Traceback" not in bare.stderr
    assert "needs the tek_actors package" in bare.stderr
    assert ".venv/bin/python tools/fake_providers.py" in bare.stderr


def test_the_fake_provider_tool_serves_with_the_venv_python() -> None:
    served = subprocess.Popen(
        [sys.executable, str(TOOL), "--kind", "openai", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert served.stdout is not None
        assert served.stdout.readline().startswith("http://127.0.0.1:")
    finally:
        served.terminate()
        served.communicate(timeout=30)
