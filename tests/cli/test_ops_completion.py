"""`tek completion bash|zsh|fish` (issue 15, item 5): the script click produces for `tek`, and
that script's protocol answering `tek ga<TAB>` with `gateway`, each in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEK = Path(sys.executable).parent / "tek"


def tek(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TEK), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **env),
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_is_what_click_produces(shell: str) -> None:
    printed = tek("completion", shell)
    assert printed.returncode == 0, printed.stderr
    clicks = tek(_TEK_COMPLETE=f"{shell}_source")
    assert clicks.returncode == 0, clicks.stderr
    assert printed.stdout == clicks.stdout and "_TEK_COMPLETE" in printed.stdout


def test_the_protocol_completes_a_command_name() -> None:
    bash = tek(_TEK_COMPLETE="bash_complete", COMP_WORDS="tek ga", COMP_CWORD="1")
    assert bash.returncode == 0, bash.stderr
    assert bash.stdout.splitlines() == ["plain,gateway"]
    sub = tek(_TEK_COMPLETE="bash_complete", COMP_WORDS="tek gateway ins", COMP_CWORD="2")
    assert sub.stdout.splitlines() == ["plain,install"]
    fish = tek(_TEK_COMPLETE="fish_complete", COMP_WORDS="tek ga", COMP_CWORD="ga")
    assert fish.stdout.splitlines()[0].startswith("plain,gateway")


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = tek("completion", "powershell")
    assert done.returncode == 2 and "bash" in done.stderr and done.stdout == ""
