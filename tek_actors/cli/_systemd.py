"""The systemd user unit `tek gateway install` writes, and where it goes.

One template makes both the unit that `install` writes and configs/tek-gateway.service (that
file is this template rendered for an example path; tests/cli/test_ops_systemd.py holds the two
equal). Its `ExecStart` is the `tek` that is running `install`, by absolute path (the console
script, or `python -m tek_actors` when it was started that way), so the unit runs the tek the
person installed, wherever that is (README's install puts it in the clone's `.venv/bin/`).

The unit goes to `$XDG_CONFIG_HOME/systemd/user/` (`~/.config/systemd/user/` without it). A file
there that does not carry MARKER was not written by tek and is never replaced or removed
without `--force`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tek_actors.home import TekHome

__all__ = [
    "MARKER",
    "UNIT_NAME",
    "exec_start",
    "quote",
    "systemctl",
    "tek_command",
    "unit_path",
    "unit_text",
]

UNIT_NAME = "tek-gateway.service"
MARKER = "# Written by `tek gateway install`"

_TEMPLATE = """\
{marker}; `tek gateway uninstall` removes it.
# systemd user unit for the tek gateway. Do not copy it by hand: `tek gateway install` writes
# it to ~/.config/systemd/user/ with ExecStart naming the tek that ran it (absolute path), then
#   systemctl --user enable --now tek-gateway
# The gateway exits non-zero when its restart intensity is exceeded or its journal's disk
# fails; Restart=on-failure brings it back, and it rehydrates from its journal. A provider's
# api_key_env must be set in this unit's environment (systemctl --user edit tek-gateway:
# Environment=NAME=VALUE), not only in a shell's.
[Unit]
Description=tek gateway (self-hosted AI agent)
After=default.target

[Service]
# Type=notify: the gateway sends READY=1 (sd_notify) once domain requests are served, i.e. its
# actor tree has started and rehydrated; units ordered After= it start only then. An in-process
# restart (tek gateway restart) shows as "reloading" until the tree serves again.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# The actor tree has 60 s to start (rehydration included) before the gateway gives up (exit 1).
TimeoutStartSec=90
Restart=on-failure
RestartSec=2
# Graceful stop: SIGTERM lets in-flight work finish within the restart grace (30 s default).
KillSignal=SIGTERM
TimeoutStopSec=45
StartLimitIntervalSec=300
StartLimitBurst=5
UMask=0077

[Install]
WantedBy=default.target
"""


def unit_text(exec_line: str) -> str:
    """The whole unit file, with `exec_line` (already quoted for systemd) as its ExecStart."""
    return _TEMPLATE.format(marker=MARKER, exec_start=exec_line)


def unit_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or ""
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "systemd" / "user" / UNIT_NAME


def tek_command() -> list[str]:
    """How to run the `tek` that is running now: its console script by absolute path, or the
    interpreter with `-m tek_actors` (`python -m tek_actors ...`, or a script that is gone)."""
    script = sys.argv[0] if sys.argv else ""
    if script and Path(script).name not in ("__main__.py", "-c"):
        found = script if os.sep in script else shutil.which(script)
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return [os.path.abspath(found)]
    # The interpreter's own path, not resolved: a virtualenv's python is a symlink, and its
    # target would not find the virtualenv's packages.
    return [os.path.abspath(sys.executable), "-m", "tek_actors"]


def exec_start(home: TekHome) -> list[str]:
    """The gateway's command line for the unit. A one-folder home (TEK_HOME, --home) is named;
    the platform folders are not (the gateway finds them as this `tek` did)."""
    args = tek_command()
    if home.state_dir == home.config_dir / "state" and home.run_dir == home.config_dir / "run":
        args += ["--home", str(home.config_dir)]
    return [*args, "gateway", "run", "--log-file"]


def quote(args: Sequence[str]) -> str:
    """`args` as one systemd command line: `%` and `$` doubled (specifiers, variables), a word
    with spaces, quotes or backslashes in double quotes."""
    words = []
    for arg in args:
        word = arg.replace("%", "%%").replace("$", "$$")
        if not word or any(c in word for c in " \t\"'\\;"):
            word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(word)
    return " ".join(words)


def systemctl(*args: str, timeout: float = 30.0) -> str | None:
    """Run `systemctl --user ARGS`; None if it did, else why not (to show as a warning with the
    command to run by hand). Never raises."""
    program = shutil.which("systemctl")
    if program is None:
        return "systemctl was not found"
    try:
        done = subprocess.run(
            [program, "--user", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl could not run: {exc}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"systemctl exited with {done.returncode}" + (f": {said[-1]}" if said else "")
    return None
