"""`tek gateway install|uninstall` (issue 15, items 5 and 10): a systemd user unit whose
ExecStart is the tek that ran `install`, in $XDG_CONFIG_HOME/systemd/user/; systemctl's
daemon-reload run if there is one, a warning with the command to run by hand if it is missing or
fails. configs/tek-gateway.service is what install writes. Every run is the real `tek` in a
subprocess, with HOME and XDG_CONFIG_HOME in a temp folder and a stand-in `systemctl` (a real
script that records its arguments) on PATH, so no real user manager is touched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tek_actors.cli._systemd import MARKER, unit_text

ROOT = Path(__file__).resolve().parents[2]
TEK = Path(sys.executable).parent / "tek"  # the console script of this virtualenv


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """HOME, XDG_CONFIG_HOME and a bin/ folder for the stand-in systemctl, under tmp_path."""
    for name in ("home", "xdg", "bin"):
        (tmp_path / name).mkdir()
    return tmp_path


def systemctl_stub(box: Path, code: int = 0) -> Path:
    """A `systemctl` that appends its arguments to calls.txt and exits `code`."""
    stub = box / "bin" / "systemctl"
    stub.write_text(
        f'#!/bin/sh\necho "$@" >> {box / "calls.txt"}\n'
        + (f'echo "Failed to connect to bus" >&2\nexit {code}\n' if code else "exit 0\n")
    )
    stub.chmod(0o755)
    return stub


def run(
    box: Path, home: Path, *args: str, module: bool = False, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        HOME=str(box / "home"),
        XDG_CONFIG_HOME=str(box / "xdg"),
        PATH=path if path is not None else f"{box / 'bin'}:/usr/bin:/bin",
        TEK_LOG_LEVEL="WARNING",
    )
    program = [sys.executable, "-m", "tek_actors"] if module else [str(TEK)]
    return subprocess.run(
        [*program, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def unit(box: Path) -> Path:
    return box / "xdg" / "systemd" / "user" / "tek-gateway.service"


def exec_start(text: str) -> str:
    return re.search(r"^ExecStart=(.*)$", text, re.M).group(1)  # type: ignore[union-attr]


def test_install_writes_the_unit_for_the_running_tek_and_reloads(box: Path, home: Path) -> None:
    systemctl_stub(box)
    done = run(box, home, "gateway", "install")
    assert done.returncode == 0, done.stderr
    text = unit(box).read_text()
    assert exec_start(text) == f"{TEK} --home {home} gateway run --log-file"
    assert text == unit_text(exec_start(text))
    assert text.startswith(MARKER)
    assert (box / "calls.txt").read_text() == "--user daemon-reload\n"
    assert "systemctl --user enable --now tek-gateway" in done.stdout
    assert done.stderr == ""
    # Run as `python -m tek_actors`, the unit runs the same interpreter the same way.
    again = run(box, home, "--json", "gateway", "install", module=True)
    assert again.returncode == 0, again.stderr
    command = [sys.executable, "-m", "tek_actors", "--home", str(home), "gateway", "run"]
    assert exec_start(unit(box).read_text()) == " ".join([*command, "--log-file"])


def test_the_shipped_unit_is_what_install_writes() -> None:
    shipped = (ROOT / "configs" / "tek-gateway.service").read_text()
    assert shipped == unit_text(exec_start(shipped))
    assert "%h/.local/bin/tek" not in shipped  # README's install never made that


@pytest.mark.parametrize("failing", [True, False])
def test_a_missing_or_failing_systemctl_is_a_warning_with_the_command(
    box: Path, home: Path, failing: bool
) -> None:
    if failing:
        systemctl_stub(box, code=1)
        path = f"{box / 'bin'}:/usr/bin:/bin"
    else:
        path = str(box / "bin")  # nothing there: no systemctl at all
    done = run(box, home, "gateway", "install", path=path)
    assert done.returncode == 0, done.stderr
    assert unit(box).exists()
    assert "warn" in done.stderr and "systemctl --user daemon-reload" in done.stderr
    assert ("exited with 1" if failing else "was not found") in done.stderr
    assert "Traceback" not in done.stderr


def test_uninstall_disables_removes_and_reloads(box: Path, home: Path) -> None:
    systemctl_stub(box)
    assert run(box, home, "gateway", "install").returncode == 0
    done = run(box, home, "gateway", "uninstall")
    assert done.returncode == 0, done.stderr
    assert not unit(box).exists()
    calls = (box / "calls.txt").read_text().splitlines()
    reload, disable = "--user daemon-reload", "--user disable tek-gateway.service"
    assert calls == [reload, disable, reload]
    nothing = run(box, home, "gateway", "uninstall")
    assert nothing.returncode == 0 and "nothing to remove" in nothing.stdout


def test_a_unit_tek_did_not_write_is_left_alone_without_force(box: Path, home: Path) -> None:
    systemctl_stub(box)
    unit(box).parent.mkdir(parents=True)
    unit(box).write_text("[Service]\nExecStart=/usr/bin/mine\n")
    for verb in ("install", "uninstall"):
        refused = run(box, home, "gateway", verb)
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: conflict: ") and "--force" in refused.stderr
        assert unit(box).read_text() == "[Service]\nExecStart=/usr/bin/mine\n"
    assert not (box / "calls.txt").exists()
    assert run(box, home, "gateway", "install", "--force").returncode == 0
    assert unit(box).read_text().startswith(MARKER)


def test_bad_arguments_are_usage_errors(box: Path, home: Path) -> None:
    for args in (["gateway", "install", "extra"], ["gateway", "uninstall", "--bogus"]):
        done = run(box, home, *args)
        assert done.returncode == 2 and "Usage" in done.stderr
    assert not unit(box).exists()
