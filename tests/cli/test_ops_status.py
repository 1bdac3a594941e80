"""`tek status` and `tek doctor` (issue 15, item 5), through the real `tek` against a real
gateway process: one screen (or one JSON object) of everything, exit 3 with the log's path when
no gateway runs; doctor's findings one line each, exit 1 when one fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tek_actors.testing import GatewayProcess
from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow


def test_status_shows_everything_on_one_screen(home: Path, tmp_path: Path) -> None:
    with GatewayProcess(home) as gateway:
        with gateway.client() as client:
            client.call("sessions.create", {"title": "first"})
        assert (
            tek(home, "procs", "run", "--cwd", str(tmp_path), "--", "sleep", "60").returncode == 0
        )
        shown = tek(home, "status")
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        assert re.search(rf"^gateway running  pid {gateway.pid}  version \S+  up ", text, re.M)
        assert re.search(r"^  boot [0-9a-f]+  head_seq \d+$", text, re.M)
        assert f"  log {home / 'state' / 'gateway.log'}" in text
        assert re.search(r"^procs +running +0", text, re.M)  # the actors
        assert "config defaults: ok" in text
        assert "sessions 1 (0 live)  processes 1 running" in text
        assert re.search(r"^local +healthy +healthy", text, re.M)  # the provider's own breaker
        assert re.search(r"^local +local +healthy +healthy", text, re.M)  # its model's
        whole = json.loads(tek(home, "status", "--json").stdout)
        assert set(whole) == {"gateway", "config", "providers", "sessions", "processes", "log"}
        assert whole["gateway"]["pid"] == gateway.pid and whole["gateway"]["uptime_s"] >= 0
        assert whole["processes"] == {"running": 1}
        assert whole["sessions"] == {"count": 1, "live": 0}
        assert whole["providers"]["local"]["models"]["local"]["state"] == "healthy"
        assert whole["config"] == {"source": "defaults", "problem": None}
        procs = json.loads(tek(home, "procs", "list", "--json").stdout)["items"]
        assert tek(home, "procs", "kill", procs[0]["id"], "--signal", "KILL").returncode == 0


def test_status_says_when_the_gateway_runs_on_a_refused_config(home: Path) -> None:
    home.joinpath("config.json").write_text('{"config_version": 1, "models": ')
    home.joinpath("config.json").chmod(0o600)
    with GatewayProcess(home):
        shown = tek(home, "status")
        assert shown.returncode == 0, shown.stderr
        assert "config trouble: running on defaults: config.json is not valid JSON" in shown.stdout
        problem = json.loads(tek(home, "--json", "status").stdout)["config"]["problem"]
        assert problem.startswith("config.json is not valid JSON")
        doctor = tek(home, "doctor")
        assert doctor.returncode == 1
        assert re.search(r"^fail  config: .*config.json is not valid JSON", doctor.stdout, re.M)


def test_status_without_a_gateway_exits_3_and_names_the_log(home: Path) -> None:
    log = str(home / "state" / "gateway.log")
    none = tek(home, "status")
    assert none.returncode == 3 and "no gateway is running" in none.stderr
    assert f"  log: {log}" in none.stderr.splitlines()
    gateway = GatewayProcess(home).start()
    gateway.kill9()
    stale = tek(home, "status")
    assert stale.returncode == 3
    assert f"not running (stale connection file from pid {gateway.pid})" in stale.stderr
    assert f"  log: {log}" in stale.stderr.splitlines()
    error = json.loads(tek(home, "--json", "status").stdout)["error"]
    assert error["code"] == "unavailable" and error["details"]["log"] == log
    assert tek(home, "status", "extra").returncode == 2


def _findings(stdout: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        status, check = re.match(r"^(ok|warn|fail) +([^:]+):", line).groups()  # type: ignore[union-attr]
        found.setdefault(check, []).append(status)
    return found


def test_doctor_of_a_healthy_home_and_a_running_gateway(home: Path, tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    doctor = [sys.executable, "-m", "tek_actors", "--home", str(home), "doctor"]
    with GatewayProcess(home) as gateway:
        done = subprocess.run(doctor, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        found = _findings(done.stdout)
        for check in ("home", "state", "run", "gateway", "lock", "config", "keys", "disk"):
            assert found[check] == ["ok"], (check, done.stdout)
        assert found["provider local"] == ["ok"]
        assert f"lock: held by pid {gateway.pid}" in done.stdout
        assert "systemd: no user unit (optional)" in done.stdout
        whole = subprocess.run([*doctor, "--json"], capture_output=True, text=True, env=env)
        report = json.loads(whole.stdout)
        assert report["ok"] is True
        assert {c["status"] for c in report["checks"]} == {"ok"}
    # A unit whose tek is gone, an open home, a stale connection file: each says what to do.
    unit = tmp_path / "xdg" / "systemd" / "user" / "tek-gateway.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/nowhere/bin/tek gateway run --log-file\n")
    home.chmod(0o755)
    gateway = GatewayProcess(home).start()
    gateway.kill9()
    done = subprocess.run(doctor, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"fail  home: {home} is mode 0755 (others may read it)  (chmod 700 {home})" in lines
    assert any(
        line.startswith(f"warn  gateway: stale connection file from pid {gateway.pid}")
        for line in lines
    ), lines
    assert any(line.startswith("fail  systemd:") and "/nowhere/bin/tek" in line for line in lines)
    assert "provider" not in done.stdout  # no gateway: no provider asked
    home.chmod(0o700)
